"""Dispatcher: the retry/fallback loop over an in-process transport, clock and sleep."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_api_router.config import RouterConfig
from llm_api_router.dispatch import Dispatcher, Reply, StreamReply
from llm_api_router.errors import (
    AllProvidersFailed,
    NoProviderError,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamTimeout,
)
from llm_api_router.families import AnthropicFamily, OpenAIFamily
from llm_api_router.health import ProviderState

from .fakes import Canned, ManualClock, ScriptedTransport

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def make(
    *providers: dict[str, Any], settings: dict[str, Any] | None = None
) -> tuple[Dispatcher, ScriptedTransport, ManualClock, list[float]]:
    config = RouterConfig.from_dict(
        {
            "openai": [
                {"api_key": f"sk-{p['name']}", "base_url": f"http://{p['name']}/v1", **p}
                for p in providers
            ],
            "settings": settings or {},
        }
    )
    transport, clock, sleeps = ScriptedTransport(), ManualClock(), []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    dispatcher = Dispatcher(
        OpenAIFamily(),
        config.openai,
        config.settings,
        transport,
        clock=clock,
        wall_clock=lambda: 0.0,
        sleep=sleep,
    )
    return dispatcher, transport, clock, sleeps


async def run(
    dispatcher: Dispatcher, body: bytes = BODY, headers: dict[str, str] | None = None
) -> Reply:
    reply = await dispatcher.dispatch(OpenAIFamily().parse_request(body), headers or {}, "")
    assert isinstance(reply, Reply)
    return reply


def state(dispatcher: Dispatcher, name: str, now: float) -> ProviderState:
    for provider, snapshot in dispatcher.snapshots(now):
        if provider.name == name:
            return snapshot.state
    raise KeyError(name)


async def test_first_provider_answers() -> None:
    dispatcher, transport, _, _ = make({"name": "a"}, {"name": "b", "priority": 2})
    reply = await run(dispatcher)
    assert reply.provider == "a"
    assert reply.status == 200
    assert len(reply.attempts) == 1
    assert transport.sent[0].url == "http://a/v1/chat/completions"
    assert transport.sent[0].headers["authorization"] == "Bearer sk-a"
    assert transport.sent[0].body is BODY


async def test_429_falls_back_at_once_and_cools_down() -> None:
    dispatcher, transport, clock, sleeps = make({"name": "a"}, {"name": "b", "priority": 2})
    transport.script("http://a/", Canned(429, b"{}", {"retry-after": "20"}))
    reply = await run(dispatcher)
    assert reply.provider == "b"
    assert [a.outcome for a in reply.attempts] == ["rate_limited", "ok"]
    assert sleeps == []
    assert state(dispatcher, "a", clock.now) is ProviderState.COOLING_DOWN
    # The next request skips the cooling provider entirely.
    reply = await run(dispatcher)
    assert reply.provider == "b" and len(reply.attempts) == 1
    clock.advance(20)
    assert (await run(dispatcher)).provider == "a"


async def test_5xx_retries_same_provider_with_backoff_then_next() -> None:
    dispatcher, transport, _, sleeps = make(
        {"name": "a", "max_retries": 2}, {"name": "b", "priority": 2}
    )
    transport.script("http://a/", Canned(500), Canned(502), Canned(503))
    reply = await run(dispatcher)
    assert transport.hosts() == ["a", "a", "a", "b"]
    assert reply.provider == "b"
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= sleeps[1] * 2


async def test_5xx_then_success_on_retry() -> None:
    dispatcher, transport, _, _ = make({"name": "a", "max_retries": 2})
    transport.script("http://a/", Canned(503))
    reply = await run(dispatcher)
    assert reply.provider == "a"
    assert [a.status for a in reply.attempts] == [503, 200]


@pytest.mark.parametrize("error", [UpstreamConnectError("x"), UpstreamDisconnected("x")])
async def test_connection_errors_are_retried(error: Exception) -> None:
    dispatcher, transport, _, _ = make(
        {"name": "a", "max_retries": 1}, {"name": "b", "priority": 2}
    )
    transport.script("http://a/", Canned(error=error), Canned(error=error))  # type: ignore[arg-type]
    reply = await run(dispatcher)
    assert transport.hosts() == ["a", "a", "b"]
    assert reply.attempts[0].status is None


async def test_timeout_is_not_retried() -> None:
    dispatcher, transport, _, sleeps = make(
        {"name": "a", "max_retries": 3}, {"name": "b", "priority": 2}
    )
    transport.script("http://a/", Canned(error=UpstreamTimeout("x")))
    reply = await run(dispatcher)
    assert transport.hosts() == ["a", "b"]
    assert reply.attempts[0].outcome == "timeout"
    assert sleeps == []


async def test_invalid_json_2xx_is_retried() -> None:
    dispatcher, transport, _, _ = make({"name": "a", "max_retries": 1})
    transport.script("http://a/", Canned(200, b"<html>"))
    reply = await run(dispatcher)
    assert [a.outcome for a in reply.attempts] == ["invalid_response", "ok"]


async def test_other_4xx_returned_unchanged_without_fallback() -> None:
    dispatcher, transport, _, _ = make({"name": "a"}, {"name": "b", "priority": 2})
    body = b'{"error": {"message": "bad temperature", "type": "invalid_request_error"}}'
    transport.script("http://a/", Canned(400, body, {"x-request-id": "req_1", "set-cookie": "s=1"}))
    reply = await run(dispatcher)
    assert (reply.status, reply.body, reply.provider) == (400, body, "a")
    assert reply.headers["x-request-id"] == "req_1"
    assert "set-cookie" not in reply.headers
    assert transport.hosts() == ["a"]


async def test_context_length_tries_next_and_not_again() -> None:
    dispatcher, transport, clock, _ = make({"name": "a"}, {"name": "b", "priority": 2})
    body = orjson.dumps(
        {"error": {"message": "too long", "type": "x", "code": "context_length_exceeded"}}
    )
    transport.script("http://a/", Canned(400, body))
    reply = await run(dispatcher)
    assert transport.hosts() == ["a", "b"]
    assert reply.provider == "b"
    assert state(dispatcher, "a", clock.now) is ProviderState.HEALTHY


@pytest.mark.parametrize("status", [401, 402, 403])
async def test_bad_key_long_cooldown(status: int, caplog: pytest.LogCaptureFixture) -> None:
    dispatcher, transport, clock, _ = make({"name": "a"}, {"name": "b", "priority": 2})
    transport.script("http://a/", Canned(status, b"{}"))
    reply = await run(dispatcher)
    assert reply.provider == "b"
    clock.advance(300)
    assert state(dispatcher, "a", clock.now) is ProviderState.COOLING_DOWN
    assert any("'a'" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert "sk-a" not in caplog.text


async def test_404_tries_next() -> None:
    dispatcher, transport, _, _ = make({"name": "a"}, {"name": "b", "priority": 2})
    transport.script("http://a/", Canned(404, b"{}"))
    assert (await run(dispatcher)).provider == "b"


async def test_all_rate_limited_gives_429_with_shortest_cooldown() -> None:
    dispatcher, transport, _, _ = make({"name": "a"}, {"name": "b", "priority": 2})
    transport.script("http://a/", Canned(429, b"{}", {"retry-after": "30"}))
    transport.script("http://b/", Canned(429, b"{}", {"retry-after": "5"}))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(dispatcher)
    assert caught.value.retry_after == 5
    assert [a.provider for a in caught.value.attempts] == ["a", "b"]


async def test_mixed_failures_give_502() -> None:
    dispatcher, transport, _, _ = make(
        {"name": "a", "max_retries": 0}, {"name": "b", "priority": 2, "max_retries": 0}
    )
    transport.script("http://a/", Canned(429, b"{}"))
    transport.script("http://b/", Canned(500))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(dispatcher)
    assert caught.value.retry_after is None
    assert "a: 429; b: 500" in str(caught.value)


async def test_all_cooling_still_tries_the_soonest() -> None:
    dispatcher, transport, clock, _ = make({"name": "a"}, {"name": "b", "priority": 2})
    transport.script("http://a/", Canned(429, b"{}", {"retry-after": "60"}))
    transport.script("http://b/", Canned(429, b"{}", {"retry-after": "10"}))
    with pytest.raises(AllProvidersFailed):
        await run(dispatcher)
    clock.advance(1)
    reply = await run(dispatcher)
    assert reply.provider == "b"
    assert transport.hosts()[-1] == "b"


async def test_circuit_breaker_opens_and_probes() -> None:
    dispatcher, transport, clock, _ = make(
        {"name": "a", "max_retries": 0},
        {"name": "b", "priority": 2},
        settings={"circuit_breaker_threshold": 2, "circuit_breaker_cooldown": 30},
    )
    transport.script("http://a/", Canned(500), Canned(500))
    await run(dispatcher)
    await run(dispatcher)
    assert state(dispatcher, "a", clock.now) is ProviderState.CIRCUIT_OPEN
    sent = len(transport.sent)
    assert (await run(dispatcher)).provider == "b"
    assert transport.hosts()[sent:] == ["b"]  # a is skipped while open
    clock.advance(30)
    reply = await run(dispatcher)  # the probe succeeds
    assert reply.provider == "a"
    assert state(dispatcher, "a", clock.now) is ProviderState.HEALTHY


async def test_equal_priority_shares_load_and_never_repeats() -> None:
    dispatcher, transport, _, _ = make(
        {"name": "a", "max_retries": 0}, {"name": "b", "max_retries": 0}
    )
    served = {(await run(dispatcher)).provider for _ in range(4)}
    assert served == {"a", "b"}
    transport.script("http://a/", Canned(500))
    transport.script("http://b/", Canned(500))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(dispatcher)
    assert sorted(a.provider for a in caught.value.attempts) == ["a", "b"]


async def test_model_rename_changes_only_model() -> None:
    dispatcher, transport, _, _ = make({"name": "a", "models": {"m": "m-2024"}})
    body = b'{"model": "m", "messages": [], "extra": {"keep": 1.5}}'
    await run(dispatcher, body)
    assert orjson.loads(transport.sent[0].body) == {
        "model": "m-2024",
        "messages": [],
        "extra": {"keep": 1.5},
    }


async def test_unserved_model_and_no_providers() -> None:
    dispatcher, _, _, _ = make({"name": "a", "models": ["x"]})
    with pytest.raises(NoProviderError) as caught:
        await run(dispatcher)
    assert caught.value.status == 404
    empty, _, _, _ = make()
    with pytest.raises(NoProviderError) as caught:
        await run(empty)
    assert caught.value.status == 503
    assert "OPENAI_API_KEY" in caught.value.message


async def test_query_string_is_kept() -> None:
    dispatcher, transport, _, _ = make({"name": "a"})
    await dispatcher.dispatch(OpenAIFamily().parse_request(BODY), {}, "?beta=true")
    assert transport.sent[0].url == "http://a/v1/chat/completions?beta=true"


# -- streaming commit ------------------------------------------------------------------------

STREAM_BODY = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [], "stream": True})
START = b'event: message_start\ndata: {"type":"message_start"}\n\n'
STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
DELTA = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n'
)
OVERLOADED = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"o"}}\n\n'
)


def make_anthropic(*names: str) -> tuple[Dispatcher, ScriptedTransport]:
    config = RouterConfig.from_dict(
        {
            "anthropic": [
                {
                    "name": n,
                    "api_key": f"k-{n}",
                    "base_url": f"http://{n}",
                    "priority": i,
                    "max_retries": 0,
                }
                for i, n in enumerate(names)
            ]
        }
    )
    transport = ScriptedTransport()
    dispatcher = Dispatcher(AnthropicFamily(), config.anthropic, config.settings, transport)
    return dispatcher, transport


async def stream(dispatcher: Dispatcher) -> StreamReply:
    reply = await dispatcher.dispatch(AnthropicFamily().parse_request(STREAM_BODY), {}, "")
    assert isinstance(reply, StreamReply)
    return reply


async def collect(reply: StreamReply) -> bytes:
    return b"".join([piece async for piece in reply.relay.body()])


async def test_error_as_first_event_falls_back() -> None:
    dispatcher, transport = make_anthropic("a", "b")
    transport.script("http://a", Canned(chunks=[OVERLOADED]))
    transport.script("http://b", Canned(chunks=[START, STOP]))
    reply = await stream(dispatcher)
    assert reply.provider == "b"
    assert [a.outcome for a in reply.attempts] == ["overloaded", "ok"]
    assert transport.responses[0].closed
    assert await collect(reply) == START + STOP
    assert transport.responses[1].closed


async def test_comments_before_first_event_do_not_commit() -> None:
    dispatcher, transport = make_anthropic("a", "b")
    transport.script("http://a", Canned(chunks=[b": hello\n\n", OVERLOADED]))
    transport.script("http://b", Canned(chunks=[START, STOP]))
    reply = await stream(dispatcher)
    assert reply.provider == "b"


async def test_empty_stream_falls_back() -> None:
    dispatcher, transport = make_anthropic("a", "b")
    transport.script("http://a", Canned(chunks=[]))
    transport.script("http://b", Canned(chunks=[START, STOP]))
    reply = await stream(dispatcher)
    assert reply.provider == "b"
    assert reply.attempts[0].outcome == "empty_stream"


async def test_cut_stream_ends_with_native_error_and_marks_failure() -> None:
    dispatcher, transport = make_anthropic("a")
    transport.script("http://a", Canned(chunks=[START, DELTA, UpstreamDisconnected("x")]))
    reply = await stream(dispatcher)
    body = await collect(reply)
    assert body.startswith(START + DELTA)
    assert b"event: error" in body and b"closed the stream before its natural end" in body
    assert reply.relay.outcome == "cut"
    assert dispatcher.providers[0][1].snapshot(0).consecutive_failures == 1


async def test_stall_ends_with_native_error() -> None:
    dispatcher, transport = make_anthropic("a")
    transport.script("http://a", Canned(chunks=[START, DELTA, UpstreamTimeout("x")]))
    reply = await stream(dispatcher)
    body = await collect(reply)
    assert b"event: error" in body and b"sent nothing for" in body
    assert reply.relay.outcome == "stalled"


async def test_eof_without_message_stop_is_a_cut() -> None:
    dispatcher, transport = make_anthropic("a")
    transport.script("http://a", Canned(chunks=[START]))
    reply = await stream(dispatcher)
    assert b"event: error" in await collect(reply)


async def test_openai_missing_done_is_completed() -> None:
    dispatcher, transport, _, _ = make({"name": "a"})
    finish = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    transport.script("http://a/", Canned(chunks=[finish]))
    body = orjson.dumps({"model": "m", "messages": [], "stream": True})
    reply = await dispatcher.dispatch(OpenAIFamily().parse_request(body), {}, "")
    assert isinstance(reply, StreamReply)
    assert await collect(reply) == finish + b"data: [DONE]\n\n"
    assert reply.relay.outcome == "complete"


async def test_anthropic_version_default_client_value_and_credentials_last() -> None:
    dispatcher, transport = make_anthropic("a")
    transport.script("http://a", Canned(chunks=[START, STOP]), Canned(chunks=[START, STOP]))
    request = AnthropicFamily().parse_request(STREAM_BODY)
    for client_headers in ({}, {"anthropic-version": "2024-01-01", "x-api-key": "client"}):
        reply = await dispatcher.dispatch(request, client_headers, "")
        assert isinstance(reply, StreamReply)
        await collect(reply)
    default, chosen = (sent.headers for sent in transport.sent)
    assert default["anthropic-version"] == "2023-06-01"
    assert chosen["anthropic-version"] == "2024-01-01"
    assert default["x-api-key"] == chosen["x-api-key"] == "k-a"
