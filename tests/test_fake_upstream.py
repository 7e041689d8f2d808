"""Smoke test of llm_api_router/fake_upstream.py, driven with the official SDKs.

Observed SDK behaviours this pins down (openai 3.54 / anthropic 2.12):

* ``Stream(cut_after=k)``: both SDKs yield the first ``k`` deltas and then *raise*; openai wraps
  the transport error in ``openai.APIConnectionError``, anthropic lets the raw
  ``httpx2.RemoteProtocolError`` ("incomplete chunked read") escape.
* ``Stream(error_at=k)``: openai raises ``openai.APIError``, anthropic ``APIStatusError`` (the
  HTTP status is the stream's 200).
* ``Stream(malformed_at=k)``: both SDKs raise ``json.JSONDecodeError``.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import pytest

from llm_api_router.fake_upstream import (
    Drop,
    Error,
    FakeUpstream,
    FakeUpstreamThread,
    Hang,
    Ok,
    Raw,
    Stream,
    behaviour_from_dict,
    behaviour_to_dict,
    context_too_long,
    insufficient_quota,
    overloaded,
    rate_limited,
)

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def oai(fake: FakeUpstreamThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url("p1", "openai"), api_key="x", max_retries=0) as c:
        yield c


@pytest.fixture
def anth(fake: FakeUpstreamThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake.base_url("p1", "anthropic"), api_key="x", max_retries=0
    ) as c:
        yield c


def _http(method: str, url: str, payload: object = None) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def _sse(url: str, payload: object) -> list[tuple[str | None, str]]:
    """POST and parse the raw SSE wire format into (event, data) pairs."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["transfer-encoding"] == "chunked"
        text = resp.read().decode()
    assert text.endswith("\n\n")
    events: list[tuple[str | None, str]] = []
    for block in text[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


# --------------------------------------------------------------------------- success


def test_openai_ok(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from p1"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-test"
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-ratelimit-remaining-requests"]) < int(
        raw.headers["x-ratelimit-limit-requests"]
    )
    assert "openai-processing-ms" in raw.headers

    fake.script("p1", Ok(text="custom", headers={"x-extra": "1"}))
    raw = oai.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "custom"
    assert raw.headers["x-extra"] == "1"


def test_anthropic_ok(anth: anthropic.Anthropic) -> None:
    raw = anth.messages.with_raw_response.create(
        model="claude-test", max_tokens=16, messages=MESSAGES
    )
    message = raw.parse()
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from p1"
    assert message.model == "claude-test"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert raw.headers["request-id"].startswith("req_")
    assert "anthropic-ratelimit-requests-remaining" in raw.headers


def test_ok_validates_request_like_the_real_api(fake: FakeUpstreamThread) -> None:
    url = fake.base_url("p1", "anthropic") + "/v1/messages"
    status, body = _http("POST", url, {"model": "c", "messages": MESSAGES})
    assert status == 400
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    status, body = _http(
        "POST", fake.base_url("p1", "openai") + "/chat/completions", {"model": "m"}
    )
    assert status == 400
    assert body["error"]["param"] == "messages"
    assert body["error"]["code"] == "missing_required_parameter"


def test_openai_stream_with_usage(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    fake.script("p1", Ok(text="streamed text from fake"))
    with oai.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed text from fake"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_openai_stream_wire_format(fake: FakeUpstreamThread) -> None:
    url = fake.base_url("p1", "openai") + "/chat/completions"
    payload = {"model": "m", "messages": MESSAGES, "stream": True}
    events = _sse(url, {**payload, "stream_options": {"include_usage": True}})
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert len(chunks) == 1 + 5 + 1 + 1  # role, content x5, finish, usage
    assert all(c["object"] == "chat.completion.chunk" and "usage" in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0

    fake.script("p1", Stream(omit_done=True, chunks=2))
    events = _sse(url, payload)
    assert [json.loads(d)["choices"][0]["finish_reason"] for _, d in events] == [None] * 3 + [
        "stop"
    ]
    assert "usage" not in json.loads(events[0][1])


def test_anthropic_stream(fake: FakeUpstreamThread, anth: anthropic.Anthropic) -> None:
    fake.script("p1", Stream(text="one two three four", chunks=3, interval=0.01))
    with anth.messages.stream(model="claude-test", max_tokens=16, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "one two three four"
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4

    events = _sse(
        fake.base_url("p1", "anthropic") + "/v1/messages",
        {"model": "c", "max_tokens": 5, "messages": MESSAGES, "stream": True},
    )
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(json.loads(data)["type"] == name for name, data in events)


# --------------------------------------------------------------------------- errors


def test_openai_rate_limited(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    fake.script("p1", rate_limited(retry_after=1.5, retry_after_ms=1500))
    with pytest.raises(openai.RateLimitError) as excinfo:
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert excinfo.value.response.headers["retry-after"] == "1.5"
    assert excinfo.value.response.headers["retry-after-ms"] == "1500"
    assert excinfo.value.code == "rate_limit_exceeded"
    assert excinfo.value.type == "requests"

    fake.script("p1", insufficient_quota(), context_too_long())
    with pytest.raises(openai.RateLimitError) as excinfo:
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert excinfo.value.code == excinfo.value.type == "insufficient_quota"
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert bad.value.code == "context_length_exceeded"


def test_anthropic_errors(fake: FakeUpstreamThread, anth: anthropic.Anthropic) -> None:
    fake.script("p1", overloaded(), context_too_long(), Error(401))
    with pytest.raises(anthropic.APIStatusError) as excinfo:
        anth.messages.create(model="claude-test", max_tokens=16, messages=MESSAGES)
    assert excinfo.value.status_code == 529
    body: Any = excinfo.value.body
    assert body["type"] == "error"
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert body["request_id"] == excinfo.value.response.headers["request-id"]
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        anth.messages.create(model="claude-test", max_tokens=16, messages=MESSAGES)
    with pytest.raises(anthropic.AuthenticationError):
        anth.messages.create(model="claude-test", max_tokens=16, messages=MESSAGES)


def test_raw_non_json_200(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    fake.script("p1", Raw(200, b"<html>gateway</html>", content_type="text/html"))
    raw = oai.chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    assert raw.http_response.text == "<html>gateway</html>"
    assert raw.headers["content-type"] == "text/html"


def test_stream_error_at_0(
    fake: FakeUpstreamThread, oai: openai.OpenAI, anth: anthropic.Anthropic
) -> None:
    fake.script("p1", Stream(error_at=0), Stream(error_at=0))
    with (
        pytest.raises(openai.APIError, match="Overloaded"),
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True) as stream,
    ):
        list(stream)
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        anth.messages.stream(model="claude-test", max_tokens=16, messages=MESSAGES) as astream,
    ):
        list(astream.text_stream)
    assert all(r.completed for r in fake.requests("p1"))


def test_stream_cut_after_2_raises(
    fake: FakeUpstreamThread, oai: openai.OpenAI, anth: anthropic.Anthropic
) -> None:
    fake.script("p1", Stream(cut_after=2), Stream(cut_after=2))
    received: list[str] = []
    with (
        pytest.raises(openai.APIConnectionError),
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True) as stream,
    ):
        received.extend(c.choices[0].delta.content or "" for c in stream)
    assert received == ["", "He", "llo"]  # role chunk, then 2 content deltas
    texts: list[str] = []
    with (
        pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"),
        anth.messages.stream(model="claude-test", max_tokens=16, messages=MESSAGES) as astream,
    ):
        texts.extend(astream.text_stream)
    assert texts == ["He", "llo"]
    records = fake.requests("p1")
    assert [(r.completed, r.disconnected_at) for r in records] == [(False, None)] * 2


def test_stream_malformed_event(
    fake: FakeUpstreamThread, oai: openai.OpenAI, anth: anthropic.Anthropic
) -> None:
    fake.script("p1", Stream(malformed_at=1), Stream(malformed_at=1))
    with (
        pytest.raises(json.JSONDecodeError),
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True) as stream,
    ):
        list(stream)
    with (
        pytest.raises(json.JSONDecodeError),
        anth.messages.stream(model="claude-test", max_tokens=16, messages=MESSAGES) as astream,
    ):
        list(astream.text_stream)


# --------------------------------------------------------------------------- connection faults


def test_hang_records_client_disconnect(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    fake.script("p1", Hang())
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).chat.completions.create(model="gpt-test", messages=MESSAGES)
    record = fake.wait_for_disconnect("p1", timeout=2.0)
    assert record is not None
    assert record.disconnected_at is not None
    assert 0.2 < record.disconnected_at - record.received_at < 1.0
    assert not record.completed


def test_stall_records_client_disconnect(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    fake.script("p1", Stream(stall_after=1))
    got: list[str] = []
    with (
        pytest.raises(openai.APITimeoutError),
        oai.with_options(timeout=0.3).chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True
        ) as stream,
    ):
        got.extend(c.choices[0].delta.content or "" for c in stream)
    assert got == ["", "He"]
    record = fake.wait_for_disconnect("p1", timeout=2.0)
    assert record is not None
    assert not record.completed


def test_keep_open_and_first_event_delay(
    fake: FakeUpstreamThread, oai: openai.OpenAI, anth: anthropic.Anthropic
) -> None:
    # openai stops reading at [DONE], so it does not notice the connection stays open ...
    fake.script("p1", Stream(keep_open=True, first_event_delay=0.2))
    started = time.monotonic()
    with oai.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from p1"
    assert time.monotonic() - started >= 0.2
    fake.reset()
    fake.script("p1", Stream(keep_open=True))
    # ... while anthropic reads until EOF, past message_stop, and times out.
    texts: list[str] = []
    with (
        pytest.raises(httpx2.ReadTimeout),
        anth.with_options(timeout=0.3).messages.stream(
            model="claude-test", max_tokens=16, messages=MESSAGES
        ) as astream,
    ):
        texts.extend(astream.text_stream)
    assert "".join(texts) == "Hello from p1"
    record = fake.wait_for_disconnect("p1", timeout=2.0)
    assert record is not None
    assert record.family == "anthropic"
    assert not record.completed


@pytest.mark.parametrize("reset", [False, True])
def test_drop(fake: FakeUpstreamThread, oai: openai.OpenAI, reset: bool) -> None:
    fake.script("p1", Drop(reset=reset))
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    (record,) = fake.requests("p1")
    assert record.disconnected_at is None
    assert not record.completed


# --------------------------------------------------------------------------- recording & control


def test_requests_are_recorded(
    fake: FakeUpstreamThread, oai: openai.OpenAI, anth: anthropic.Anthropic
) -> None:
    oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    anth.messages.create(model="claude-test", max_tokens=16, messages=MESSAGES)
    first, second = fake.requests("p1")
    assert (first.family, first.method, first.path) == ("openai", "POST", "/p1/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer x"
    assert first.json["model"] == "gpt-test"
    assert json.loads(first.body) == first.json
    assert first.completed
    assert first.disconnected_at is None
    assert (second.family, second.path) == ("anthropic", "/p1/v1/messages")
    assert second.headers["authorization"] == "Bearer x"  # anthropic 2.x; 0.x sent x-api-key
    assert "anthropic-version" in second.headers
    assert second.json["max_tokens"] == 16
    assert fake.requests("other") == []


def test_unknown_path_is_404_json(fake: FakeUpstreamThread) -> None:
    status, body = _http("POST", fake.url + "/p1/chat/completions", {})
    assert status == 404
    assert body["error"]["type"] == "invalid_request_error"
    assert fake.requests("p1")[0].family is None


def test_control_api(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    behaviours = [{"kind": "error", "status": 429, "headers": {"retry-after": "2"}}]
    assert (
        _http("POST", fake.url + "/_control/script", {"provider": "p1", "behaviours": behaviours})[
            0
        ]
        == 200
    )
    default = {"kind": "ok", "text": "from default"}
    assert (
        _http("POST", fake.url + "/_control/default", {"provider": "p1", "behaviour": default})[0]
        == 200
    )
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    completion = oai.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert completion.choices[0].message.content == "from default"

    status, records = _http("GET", fake.url + "/_control/requests?provider=p1")
    assert status == 200
    assert len(records) == 2
    assert json.loads(records[0]["body"])["model"] == "gpt-test"
    assert records[1]["completed"] is True

    status, err = _http(
        "POST", fake.url + "/_control/script", {"provider": "p1", "behaviours": [{"kind": "nope"}]}
    )
    assert status == 400
    assert "kind" in err["error"]
    assert _http("POST", fake.url + "/_control/reset", {})[0] == 200
    assert fake.requests() == []


def test_behaviour_dict_round_trip() -> None:
    for behaviour in (Ok(), rate_limited(3), Raw(200, b"x"), Hang(1), Drop(), Stream(cut_after=1)):
        assert behaviour_from_dict(behaviour_to_dict(behaviour)) == behaviour
    with pytest.raises(ValueError, match="unknown field"):
        behaviour_from_dict({"kind": "hang", "secs": 1})
    with pytest.raises(ValueError, match="chunks"):
        Stream(chunks=0)


# --------------------------------------------------------------------------- async API & CLI


async def test_async_api_stop_with_stalled_stream() -> None:
    upstream = FakeUpstream()
    await upstream.start()
    upstream.script("a1", Stream(stall_after=0))
    async with aiohttp.ClientSession() as session:
        url = upstream.base_url("a1", "openai") + "/chat/completions"
        payload = {"model": "m", "messages": MESSAGES, "stream": True}
        async with session.post(url, json=payload) as resp:
            assert resp.status == 200
            first = await resp.content.readuntil(b"\n\n")
            assert first.startswith(b"data: {")
            started = time.monotonic()
            await upstream.stop()
            assert time.monotonic() - started < 2.0
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.content.read()
    (record,) = upstream.requests("a1")
    assert record.disconnected_at is None  # stopped by the fake, not left by the client
    await asyncio.sleep(0)


def test_cli(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "llm_api_router.fake_upstream",
        "--port",
        "0",
        "--fail",
        "primary=429",
    ]
    with subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 15)
            assert ready, "the CLI printed nothing within 15 s"
            line = proc.stdout.readline().strip()
            assert line.startswith("fake upstream listening on http://127.0.0.1:")
            assert line.endswith("(providers: any path prefix; failing: primary=429)")
            url = line.split()[4]
            with (
                openai.OpenAI(base_url=f"{url}/primary/v1", api_key="x", max_retries=0) as client,
                pytest.raises(openai.RateLimitError) as excinfo,
            ):
                client.chat.completions.create(model="gpt-test", messages=MESSAGES)
            assert excinfo.value.response.headers["retry-after"] == "30"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.returncode == 0
