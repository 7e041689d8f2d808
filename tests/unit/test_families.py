"""Family adapters: request validation, native error shapes, stream trackers."""

from __future__ import annotations

import orjson
import pytest

from llm_api_router.config import RouterConfig
from llm_api_router.errors import ClientRequestError
from llm_api_router.families import AnthropicFamily, ApiFamily, OpenAIFamily
from llm_api_router.sse import SSEDecoder

OPENAI = OpenAIFamily()
ANTHROPIC = AnthropicFamily()
GOOD = {
    "openai": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "anthropic": {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.mark.parametrize("family", [OPENAI, ANTHROPIC], ids=lambda f: f.name)
def test_good_request_parses_and_keeps_body(family: ApiFamily) -> None:
    body = orjson.dumps({**GOOD[family.name], "unknown_field": [1, 2], "stream": True})
    request = family.parse_request(body)
    assert request.body is body
    assert request.model == "m"
    assert request.stream is True


@pytest.mark.parametrize("family", [OPENAI, ANTHROPIC], ids=lambda f: f.name)
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"text"', "not a string"),
        (b'{"messages": []}', "'model'"),
    ],
)
def test_bad_bodies(family: ApiFamily, body: bytes, fragment: str) -> None:
    with pytest.raises(ClientRequestError) as caught:
        family.parse_request(body)
    assert caught.value.status == 400
    assert fragment in caught.value.message


@pytest.mark.parametrize("family", [OPENAI, ANTHROPIC], ids=lambda f: f.name)
@pytest.mark.parametrize(
    ("field", "value"),
    [("model", 5), ("model", ""), ("messages", "hi"), ("stream", "yes"), ("stream_options", 1)],
)
def test_wrong_types(family: ApiFamily, field: str, value: object) -> None:
    body = orjson.dumps({**GOOD[family.name], field: value})
    with pytest.raises(ClientRequestError) as caught:
        family.parse_request(body)
    assert caught.value.param == field
    assert "Invalid type" in caught.value.message


@pytest.mark.parametrize("value", [None, "5", 0, -1, 2.5, True])
def test_anthropic_max_tokens(value: object) -> None:
    data = {**GOOD["anthropic"], "max_tokens": value}
    with pytest.raises(ClientRequestError, match="max_tokens"):
        ANTHROPIC.parse_request(orjson.dumps(data))


def test_anthropic_requires_max_tokens() -> None:
    with pytest.raises(ClientRequestError, match="'max_tokens'"):
        ANTHROPIC.parse_request(b'{"model": "m", "messages": []}')


def test_include_usage_detected() -> None:
    body = orjson.dumps(
        {**GOOD["openai"], "stream": True, "stream_options": {"include_usage": True}}
    )
    assert OPENAI.parse_request(body).include_usage


def test_native_error_bodies() -> None:
    openai = orjson.loads(OPENAI.error_body(429, "slow down", code="c"))
    assert openai == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "c"}
    }
    anthropic = orjson.loads(ANTHROPIC.error_body(404, "nope"))
    assert anthropic == {"type": "error", "error": {"type": "not_found_error", "message": "nope"}}
    assert orjson.loads(ANTHROPIC.error_body(529, "x"))["error"]["type"] == "overloaded_error"
    assert orjson.loads(ANTHROPIC.error_body(502, "x"))["error"]["type"] == "api_error"


def test_stream_error_events_are_native() -> None:
    (event,) = SSEDecoder().feed(OPENAI.stream_error_event(502, "cut"))
    assert event.event is None
    assert orjson.loads(event.data)["error"]["message"] == "cut"
    (event,) = SSEDecoder().feed(ANTHROPIC.stream_error_event(502, "cut"))
    assert event.event == "error"
    assert orjson.loads(event.data)["error"] == {"type": "api_error", "message": "cut"}


def test_auth_headers() -> None:
    config = RouterConfig.from_dict(
        {
            "openai": [{"api_key": "sk-o", "organization": "org", "project": "p"}],
            "anthropic": [{"api_key": "sk-a"}],
        }
    )
    assert OPENAI.auth_headers(config.openai[0]) == {
        "authorization": "Bearer sk-o",
        "openai-organization": "org",
        "openai-project": "p",
    }
    assert ANTHROPIC.auth_headers(config.anthropic[0]) == {"x-api-key": "sk-a"}
    assert ANTHROPIC.default_headers == {"anthropic-version": "2023-06-01"}
    assert OPENAI.default_headers == {}


def feed(family: ApiFamily, stream: bytes, include_usage: bool = False):  # type: ignore[no-untyped-def]
    body = orjson.dumps(
        {**GOOD[family.name], "stream": True, "stream_options": {"include_usage": include_usage}}
    )
    tracker = family.new_stream_tracker(family.parse_request(body))
    errors = [tracker.observe(e) for e in SSEDecoder().feed(stream)]
    return tracker, [e for e in errors if e is not None]


def chunk(**fields: object) -> bytes:
    return b"data: " + orjson.dumps({"object": "chat.completion.chunk", **fields}) + b"\n\n"


def test_openai_tracker_natural_end() -> None:
    content = chunk(choices=[{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}])
    tracker, _ = feed(OPENAI, content)
    assert not tracker.finished
    finish = chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    tracker, _ = feed(OPENAI, content + finish)
    assert tracker.finished and not tracker.terminal
    assert tracker.completion() == b"data: [DONE]\n\n"
    tracker, _ = feed(OPENAI, content + finish + b"data: [DONE]\n\n")
    assert tracker.terminal


def test_openai_tracker_waits_for_usage_when_asked() -> None:
    finish = chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    tracker, _ = feed(OPENAI, finish, include_usage=True)
    assert not tracker.finished
    usage = chunk(choices=[], usage={"total_tokens": 3})
    tracker, _ = feed(OPENAI, finish + usage, include_usage=True)
    assert tracker.finished


def test_openai_tracker_all_choices_must_finish() -> None:
    both = chunk(
        choices=[{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "b"}}]
    )
    one = chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    tracker, _ = feed(OPENAI, both + one)
    assert not tracker.finished
    two = chunk(choices=[{"index": 1, "delta": {}, "finish_reason": "length"}])
    tracker, _ = feed(OPENAI, both + one + two)
    assert tracker.finished


def test_openai_tracker_error_and_malformed() -> None:
    tracker, errors = feed(
        OPENAI,
        b"data: {nope\n\n" + b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n',
    )
    assert len(errors) == 1
    assert errors[0].message == "boom"
    assert not tracker.finished


def test_anthropic_tracker() -> None:
    stream = b"event: message_start\ndata: {}\n\nevent: ping\ndata: {}\n\n"
    tracker, errors = feed(ANTHROPIC, stream)
    assert not tracker.finished and not errors
    tracker, _ = feed(ANTHROPIC, stream + b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert tracker.finished and tracker.terminal
    error = (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"o"}}\n\n'
    )
    tracker, errors = feed(ANTHROPIC, error)
    assert errors[0].type == "overloaded_error"
    assert ANTHROPIC.stream_error_status(errors[0]) == 529


def test_openai_tracker_content_that_mentions_error_or_done_is_plain() -> None:
    # The wire-level shortcut must not mistake a model's words for protocol: these chunks
    # contain "error" and [DONE] in their text and are ordinary content.
    words = ['the "error" was', "data: [DONE]", '"finish_reason":"stop"']
    stream = b"".join(
        chunk(choices=[{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in words
    )
    tracker, errors = feed(OPENAI, stream)
    assert errors == []
    assert not tracker.finished and not tracker.terminal


def test_anthropic_tracker_content_that_mentions_error_or_stop_is_plain() -> None:
    delta = (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
        b'"text":"an error, then message_stop, then \\"type\\":\\"error\\""}}\n\n'
    )
    tracker, errors = feed(ANTHROPIC, delta)
    assert errors == []
    assert not tracker.finished and not tracker.terminal
    # An unnamed event is judged by its data, as before.
    unnamed = b'data: {"type":"error","error":{"type":"api_error","message":"m"}}\n\n'
    tracker, errors = feed(ANTHROPIC, delta + unnamed)
    assert [e.type for e in errors] == ["api_error"]
