"""SPEC section 9 in the dispatcher: operation tables, Responses streams, the commit point,
fallback by operation kind, the model catalogue and keys scrubbed from every answer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_api_router.catalog import ModelCatalog
from llm_api_router.config import RouterConfig
from llm_api_router.dispatch import Dispatcher, Reply, StreamReply
from llm_api_router.errors import (
    AllProvidersFailed,
    ClientRequestError,
    LocalResourceError,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamTimeout,
)
from llm_api_router.families import AnthropicFamily, ApiFamily, OpenAIFamily
from llm_api_router.health import ProviderState
from llm_api_router.sse import SSEDecoder

from .fakes import Canned, ScriptedTransport

OPENAI = OpenAIFamily()
ANTHROPIC = AnthropicFamily()
SSE = {"content-type": "text/event-stream"}
KEY_A = "sk-proj-AAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def make(family: ApiFamily, *providers: dict[str, Any]) -> tuple[Dispatcher, ScriptedTransport]:
    entries = [
        {
            "api_key": f"sk-{p['name']}-0123456789abcdef",
            "base_url": f"http://{p['name']}" + ("/v1" if family.name == "openai" else ""),
            "max_retries": 0,
            "priority": index,
            **p,
        }
        for index, p in enumerate(providers)
    ]
    config = RouterConfig.from_dict({family.name: entries})
    transport = ScriptedTransport()
    providers_ = config.providers(family.name)
    return Dispatcher(family, providers_, config.settings, transport), transport


def request(
    family: ApiFamily,
    method: str,
    client_path: str,
    body: bytes = b"",
    content_type: str | None = "application/json",
    origin: str = "",
) -> Any:
    path = family.operation_path(client_path)
    operation = family.operations.find(method, path)
    return family.parse_request(
        body, operation, method=method, path=path, content_type=content_type, origin=origin
    )


def event(name: str, **data: Any) -> bytes:
    return f"event: {name}\ndata: ".encode() + orjson.dumps({"type": name, **data}) + b"\n\n"


CREATED = event("response.created", sequence_number=0, response={"id": "resp_1", "model": "m"})
IN_PROGRESS = event("response.in_progress", sequence_number=1, response={"id": "resp_1"})
DELTA = event("response.output_text.delta", sequence_number=2, delta="Hi")
COMPLETED = event("response.completed", sequence_number=3, response={"id": "resp_1"})
RATE_LIMITED = event(
    "response.failed",
    sequence_number=2,
    response={"id": "resp_1", "error": {"code": "rate_limit_exceeded", "message": "slow down"}},
)
RESPONSES_BODY = orjson.dumps({"model": "m", "input": "hi", "stream": True})


async def collect(reply: StreamReply) -> bytes:
    return b"".join([piece async for piece in reply.relay.body()])


def state(dispatcher: Dispatcher, name: str) -> ProviderState:
    for provider, snapshot in dispatcher.snapshots(0):
        if provider.name == name:
            return snapshot.state
    raise KeyError(name)


# -- the operation tables ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "method", "client_path", "operation", "upstream"),
    [
        (OPENAI, "POST", "chat/completions", "chat", "http://x/v1/chat/completions"),
        (OPENAI, "POST", "v1/responses", "responses", "http://x/v1/responses"),
        (OPENAI, "POST", "responses/input_tokens", "responses_input_tokens", None),
        (OPENAI, "GET", "v1/responses/resp_1/input_items", "responses_object", None),
        (OPENAI, "POST", "embeddings", "embeddings", None),
        (OPENAI, "POST", "audio/transcriptions", "audio", None),
        (OPENAI, "GET", "models", "models", None),
        (OPENAI, "GET", "v1/models/gpt-4o", "model", None),
        (OPENAI, "POST", "files", "files", None),
        (OPENAI, "GET", "files/file-1/content", "files", None),
        (OPENAI, "POST", "batches/batch_1/cancel", "batches", None),
        (OPENAI, "POST", "vector_stores", "other", "http://x/v1/vector_stores"),
        (ANTHROPIC, "POST", "chat/completions", "messages", "http://x/v1/messages"),
        (ANTHROPIC, "POST", "messages", "messages", "http://x/v1/messages"),
        (ANTHROPIC, "POST", "v1/messages/count_tokens", "count_tokens", None),
        (ANTHROPIC, "GET", "v1/messages/batches/msgbatch_1/results", "batches", None),
        (ANTHROPIC, "GET", "models", "models", "http://x/v1/models"),
        (ANTHROPIC, "POST", "v1/complete", "other", "http://x/v1/complete"),
    ],
)
def test_every_path_has_an_operation(
    family: ApiFamily, method: str, client_path: str, operation: str, upstream: str | None
) -> None:
    path = family.operation_path(client_path)
    assert family.operations.find(method, path).name == operation
    if upstream is not None:
        base = "http://x/v1" if family.name == "openai" else "http://x"
        assert family.upstream_url(base, path, "") == upstream


def test_generation_requests_are_validated_lightly() -> None:
    with pytest.raises(ClientRequestError, match="model"):
        request(OPENAI, "POST", "embeddings", b'{"input": "x"}')
    with pytest.raises(ClientRequestError, match="stream"):
        request(OPENAI, "POST", "responses", b'{"model": "m", "stream": "yes"}')
    parsed = request(OPENAI, "POST", "responses", b'{"model": "m", "input": [], "x": 1}')
    assert (parsed.model, parsed.stream) == ("m", False)
    other = request(OPENAI, "POST", "files", b"not json", "multipart/form-data; boundary=b")
    assert other.model is None and other.body == b"not json"


def test_multipart_uploads_are_routed_by_their_model_field() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        b'RIFF\x00\x01\r\n--b\r\nContent-Disposition: form-data; name="model"\r\n\r\n'
        b"whisper-1\r\n--b--\r\n"
    )
    parsed = request(
        OPENAI, "POST", "audio/transcriptions", body, "multipart/form-data; boundary=b"
    )
    assert parsed.model == "whisper-1" and parsed.body == body


# -- Responses streams and the commit point ----------------------------------------------


async def test_responses_error_after_the_preamble_falls_back() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"})
    transport.script("http://a", Canned(headers=SSE, chunks=[CREATED + IN_PROGRESS, RATE_LIMITED]))
    transport.script("http://b", Canned(headers=SSE, chunks=[CREATED, DELTA, COMPLETED]))
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "responses", RESPONSES_BODY), {}, "")
    assert isinstance(reply, StreamReply) and reply.provider == "b"
    assert await collect(reply) == CREATED + DELTA + COMPLETED  # nothing of a's stream
    assert [a.outcome for a in reply.attempts] == ["rate_limited", "ok"]
    assert state(dispatcher, "a") is ProviderState.COOLING_DOWN


async def test_responses_cut_after_output_ends_in_response_failed() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"})
    transport.script(
        "http://a", Canned(headers=SSE, chunks=[CREATED, DELTA, UpstreamDisconnected("x")])
    )
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "responses", RESPONSES_BODY), {}, "")
    assert isinstance(reply, StreamReply)
    body = await collect(reply)
    events = SSEDecoder().feed(body)
    last = events[-1]
    assert last.event == "response.failed"
    payload = orjson.loads(last.data)
    assert payload["sequence_number"] == 3  # after the upstream's last one
    assert payload["response"]["id"] == "resp_1" and payload["response"]["status"] == "failed"
    assert payload["response"]["error"]["code"] == "stream_cut"
    assert b"response.completed" not in body
    assert reply.relay.outcome == "cut"


async def test_responses_failed_with_a_request_error_is_relayed_as_the_answer() -> None:
    failed = event(
        "response.failed",
        sequence_number=2,
        response={"id": "resp_1", "error": {"code": "invalid_prompt", "message": "no"}},
    )
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"})
    transport.script("http://a", Canned(headers=SSE, chunks=[CREATED, failed]))
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "responses", RESPONSES_BODY), {}, "")
    assert isinstance(reply, StreamReply) and reply.provider == "a"
    assert await collect(reply) == CREATED + failed
    assert transport.hosts() == ["a"]


async def test_upstream_error_event_after_the_commit_is_followed_by_response_failed() -> None:
    error = event("error", sequence_number=3, code="server_error", message="boom")
    dispatcher, transport = make(OPENAI, {"name": "a"})
    transport.script("http://a", Canned(headers=SSE, chunks=[CREATED, DELTA, error]))
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "responses", RESPONSES_BODY), {}, "")
    assert isinstance(reply, StreamReply)
    events = SSEDecoder().feed(await collect(reply))
    assert [e.event for e in events][-2:] == ["error", "response.failed"]
    assert orjson.loads(events[-1].data)["response"]["error"]["code"] == "server_error"


async def test_openai_role_only_chunk_is_held_back_before_an_error() -> None:
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    error = b'data: {"error":{"type":"server_error","message":"x"}}\n\n'
    done = (
        b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"})
    transport.script("http://a", Canned(headers=SSE, chunks=[b": keep-alive\n\n", role, error]))
    transport.script("http://b", Canned(headers=SSE, chunks=[role, done]))
    body = orjson.dumps({"model": "m", "messages": [], "stream": True})
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "chat/completions", body), {}, "")
    assert isinstance(reply, StreamReply) and reply.provider == "b"
    assert await collect(reply) == role + done


async def test_anthropic_overload_after_message_start_falls_back() -> None:
    start = event("message_start", message={"id": "msg_1"})
    ping = event("ping")
    overloaded = event("error", error={"type": "overloaded_error", "message": "busy"})
    text = event("content_block_delta", index=0, delta={"type": "text_delta", "text": "hi"})
    stop = event("message_stop")
    dispatcher, transport = make(ANTHROPIC, {"name": "a"}, {"name": "b"})
    transport.script("http://a", Canned(headers=SSE, chunks=[start, ping, overloaded]))
    transport.script("http://b", Canned(headers=SSE, chunks=[start + text, stop]))
    body = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [], "stream": True})
    reply = await dispatcher.dispatch(request(ANTHROPIC, "POST", "v1/messages", body), {}, "")
    assert isinstance(reply, StreamReply) and reply.provider == "b"
    assert await collect(reply) == start + text + stop


async def test_keepalive_comments_are_not_a_first_token() -> None:
    config = RouterConfig.from_dict(
        {
            "anthropic": [
                {"name": "a", "api_key": "k", "base_url": "http://a", "max_retries": 0},
                {"name": "b", "api_key": "k", "base_url": "http://b", "priority": 2},
            ],
            "settings": {"first_token_timeout": 0.05},
        }
    )
    transport = _Keepalive()
    dispatcher = Dispatcher(ANTHROPIC, config.anthropic, config.settings, transport)
    body = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [], "stream": True})
    with pytest.raises(AllProvidersFailed) as caught:
        await dispatcher.dispatch(request(ANTHROPIC, "POST", "messages", body), {}, "")
    assert [a.outcome for a in caught.value.attempts] == ["timeout", "timeout"]


class _Keepalive(ScriptedTransport):
    """An upstream that only ever sends keep-alive comments."""

    async def request(self, url: str, headers: Any, body: bytes, **kwargs: Any) -> Any:
        return _KeepaliveResponse()


class _KeepaliveResponse:
    status = 200
    headers = SSE

    async def next_chunk(self) -> bytes:
        import asyncio

        await asyncio.sleep(0.01)
        return b": keep-alive\n\n"

    async def read(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


# -- fallback by operation kind -----------------------------------------------------------


async def test_a_create_is_not_repeated_after_a_server_error() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"})
    transport.script("http://a", Canned(status=500, body=b'{"error":{"message":"x"}}'))
    reply = await dispatcher.dispatch(
        request(OPENAI, "POST", "files", b"--b--", "multipart/form-data; boundary=b"), {}, ""
    )
    assert isinstance(reply, Reply) and reply.status == 500 and reply.provider == "a"
    assert transport.hosts() == ["a"]
    assert transport.sent[0].headers["content-type"] == "multipart/form-data; boundary=b"
    assert transport.sent[0].body == b"--b--"


@pytest.mark.parametrize(
    "first",
    [
        Canned(status=429, body=b"{}", headers={"retry-after": "3"}),
        Canned(error=UpstreamConnectError("refused")),
        Canned(status=401, body=b"{}"),
    ],
)
async def test_a_create_falls_back_when_the_upstream_surely_did_not_act(first: Canned) -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"})
    transport.script("http://a", first)
    transport.script("http://b", Canned(body=b'{"id":"batch_1"}'))
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "batches", b"{}"), {}, "")
    assert isinstance(reply, Reply) and reply.provider == "b"


@pytest.mark.parametrize("error", [UpstreamTimeout("t"), UpstreamDisconnected("d")])
async def test_a_create_that_may_have_happened_is_not_repeated(error: Exception) -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"})
    transport.script("http://a", Canned(error=error))  # type: ignore[arg-type]
    with pytest.raises(AllProvidersFailed):
        await dispatcher.dispatch(request(OPENAI, "POST", "vector_stores", b"{}"), {}, "")
    assert transport.hosts() == ["a"]


async def test_a_read_moves_on_after_not_found_and_returns_the_last_not_found() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"}, {"name": "c"})
    missing = Canned(status=404, body=b'{"error":{"message":"No such File object"}}')
    transport.script("http://a", missing)
    transport.script("http://b", Canned(body=b'{"id":"file-1"}'))
    reply = await dispatcher.dispatch(request(OPENAI, "GET", "files/file-1"), {}, "")
    assert isinstance(reply, Reply) and (reply.provider, reply.status) == ("b", 200)
    assert transport.sent[0].method == "GET" and transport.sent[0].url == "http://a/v1/files/file-1"
    transport.script("http://a", missing)
    transport.script("http://b", missing)
    transport.script("http://c", missing)
    reply = await dispatcher.dispatch(request(OPENAI, "GET", "files/file-2"), {}, "")
    assert isinstance(reply, Reply) and reply.status == 404
    assert [a.outcome for a in reply.attempts] == ["not_found"] * 3


async def test_binary_answers_are_relayed_as_they_come() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"})
    audio = bytes(range(256)) * 4
    transport.script(
        "http://a",
        Canned(headers={"content-type": "audio/mpeg"}, chunks=[audio[:100], audio[100:]]),
    )
    body = orjson.dumps({"model": "tts-1", "input": "hi", "voice": "alloy"})
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "audio/speech", body), {}, "")
    assert isinstance(reply, StreamReply) and reply.headers["content-type"] == "audio/mpeg"
    assert await collect(reply) == audio
    assert reply.relay.clean_end


async def test_a_cut_binary_answer_is_not_ended_cleanly() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"})
    transport.script(
        "http://a",
        Canned(headers={"content-type": "audio/mpeg"}, chunks=[b"ID3", UpstreamDisconnected("x")]),
    )
    body = orjson.dumps({"model": "tts-1", "input": "hi"})
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "audio/speech", body), {}, "")
    assert isinstance(reply, StreamReply)
    assert await collect(reply) == b"ID3"
    assert not reply.relay.clean_end and reply.relay.outcome == "cut"


async def test_results_url_is_rewritten_to_the_router() -> None:
    dispatcher, transport = make(ANTHROPIC, {"name": "a", "base_url": "https://api.example.com"})
    answer = {
        "id": "msgbatch_1",
        "results_url": "https://api.example.com/v1/messages/batches/msgbatch_1/results",
    }
    transport.script("https://api.example.com", Canned(body=orjson.dumps(answer)))
    req = request(ANTHROPIC, "GET", "v1/messages/batches/msgbatch_1", origin="http://router:8000")
    reply = await dispatcher.dispatch(req, {}, "")
    assert isinstance(reply, Reply)
    assert orjson.loads(reply.body)["results_url"] == (
        "http://router:8000/anthropic/v1/messages/batches/msgbatch_1/results"
    )


async def test_local_resource_exhaustion_is_no_verdict_on_the_provider() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a"}, {"name": "b"})
    transport.script("http://a", Canned(error=LocalResourceError("EMFILE")))
    body = orjson.dumps({"model": "m", "messages": []})
    with pytest.raises(AllProvidersFailed) as caught:
        await dispatcher.dispatch(request(OPENAI, "POST", "chat/completions", body), {}, "")
    assert [a.outcome for a in caught.value.attempts] == ["local_resource_exhausted"]
    assert transport.hosts() == ["a"]  # the next provider would fail the same way
    for _, health in dispatcher.providers:
        snapshot = health.snapshot(0)
        assert snapshot.state is ProviderState.HEALTHY and snapshot.consecutive_failures == 0


async def test_a_deeply_nested_body_with_a_renamed_model_is_a_400_not_a_500() -> None:
    dispatcher, _ = make(OPENAI, {"name": "a", "models": {"m": "upstream-m"}})
    body = b'{"model": "m", "messages": [], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(ClientRequestError) as caught:
        await dispatcher.dispatch(request(OPENAI, "POST", "chat/completions", body), {}, "")
    assert caught.value.status == 400


# -- keys never leave the router ------------------------------------------------------------


async def test_a_key_echoed_in_an_error_body_is_scrubbed() -> None:
    dispatcher, transport = make(OPENAI, {"name": "a", "api_key": KEY_A})
    echo = f'{{"error":{{"message":"bad header Authorization: Bearer {KEY_A}"}}}}'.encode()
    transport.script("http://a", Canned(status=400, body=echo))
    body = orjson.dumps({"model": "m", "messages": []})
    reply = await dispatcher.dispatch(request(OPENAI, "POST", "chat/completions", body), {}, "")
    assert isinstance(reply, Reply) and reply.status == 400
    assert KEY_A.encode() not in reply.body and b"Bearer [REDACTED]" in reply.body


async def test_a_key_echoed_mid_stream_across_reads_is_scrubbed() -> None:
    dispatcher, transport = make(ANTHROPIC, {"name": "a", "api_key": KEY_A})
    start = event("message_start", message={"id": "msg_1"})
    text = event("content_block_delta", index=0, delta={"type": "text_delta", "text": KEY_A})
    split = len(text) - len(KEY_A) // 2 - 10
    stop = event("message_stop")
    transport.script(
        "http://a", Canned(headers=SSE, chunks=[start, text[:split], text[split:], stop])
    )
    body = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [], "stream": True})
    reply = await dispatcher.dispatch(request(ANTHROPIC, "POST", "messages", body), {}, "")
    assert isinstance(reply, StreamReply)
    relayed = await collect(reply)
    assert KEY_A.encode() not in relayed and b"[REDACTED]" in relayed
    assert relayed.endswith(stop)


async def test_model_catalogue_merges_configured_names_with_the_upstream_list() -> None:
    dispatcher, transport = make(
        OPENAI, {"name": "a", "models": {"fast": "gpt-4o-mini"}}, {"name": "b"}
    )
    upstream = {"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}
    transport.script("http://b", Canned(body=orjson.dumps(upstream)))
    catalog = ModelCatalog(OPENAI, dispatcher)
    status, body = await catalog.answer("models", b"", {})
    assert status == 200
    listed = orjson.loads(body)
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["fast", "gpt-4o"]
    assert transport.hosts() == ["b"]  # only a provider that serves every name is asked
    status, body = await catalog.answer("models/gpt-4o", b"", {})
    assert status == 200 and orjson.loads(body)["id"] == "gpt-4o"
    status, body = await catalog.answer("models/nope", b"", {})
    assert status == 404 and orjson.loads(body)["error"]["code"] == "model_not_found"
    assert transport.hosts() == ["b"]  # cached


async def test_anthropic_model_catalogue_has_anthropic_shape() -> None:
    dispatcher, _ = make(ANTHROPIC, {"name": "a", "models": ["claude-a", "claude-b", "claude-c"]})
    catalog = ModelCatalog(ANTHROPIC, dispatcher)
    status, body = await catalog.answer("models", b"limit=2", {})
    page = orjson.loads(body)
    assert status == 200
    assert [m["id"] for m in page["data"]] == ["claude-a", "claude-b"]
    assert page["data"][0]["type"] == "model" and "display_name" in page["data"][0]
    assert (page["has_more"], page["first_id"], page["last_id"]) == (True, "claude-a", "claude-b")
    _, body = await catalog.answer("models", b"after_id=claude-b", {})
    assert [m["id"] for m in orjson.loads(body)["data"]] == ["claude-c"]


async def test_an_endless_event_ends_the_stream_with_a_native_error() -> None:
    dispatcher, transport = make(ANTHROPIC, {"name": "a"})
    start = event("message_start", message={"id": "msg_1"})
    text = event("content_block_delta", index=0, delta={"type": "text_delta", "text": "hi"})
    endless = [b"data: " + b"x" * 65536] + [b"x" * 65536] * 300  # ~19 MiB, never ending
    transport.script("http://a", Canned(headers=SSE, chunks=[start + text, *endless]))
    body = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [], "stream": True})
    reply = await dispatcher.dispatch(request(ANTHROPIC, "POST", "messages", body), {}, "")
    assert isinstance(reply, StreamReply)
    relayed = await collect(reply)
    assert relayed.startswith(start + text)
    assert relayed.endswith(b"\n\n") and b"event: error" in relayed and b"too large" in relayed
    assert reply.relay.outcome == "cut"
