"""SSEDecoder: splits arbitrary chunkings into the same events, keeps wire bytes."""

from __future__ import annotations

import pytest

from llm_api_router.sse import SSEDecoder, SSEEvent, SSEEventTooLarge

STREAM = (
    b'event: message_start\ndata: {"a": 1}\n\n'
    b": keep-alive\n\n"
    b"data: line one\ndata: line two\n\n"
    b"event: ping\ndata: {}\n\n"
    b"data: [DONE]\n\n"
)


def decode_all(chunks: list[bytes]) -> list[tuple[str | None, str, bytes]]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    tail = decoder.flush()
    if tail is not None:
        events.append(tail)
    return [(e.event, e.data, e.raw) for e in events]


def test_whole_stream_at_once() -> None:
    events = decode_all([STREAM])
    assert [(name, data) for name, data, _ in events] == [
        ("message_start", '{"a": 1}'),
        (None, ""),
        (None, "line one\nline two"),
        ("ping", "{}"),
        (None, "[DONE]"),
    ]
    assert b"".join(raw for *_, raw in events) == STREAM


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert decode_all(chunks) == decode_all([STREAM])


@pytest.mark.parametrize("size", [1, 2, 5])
def test_crlf_and_cr_line_endings(size: int) -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    chunks = [crlf[i : i + size] for i in range(0, len(crlf), size)]
    assert decode_all(chunks) == decode_all([STREAM])
    assert decode_all([STREAM.replace(b"\n", b"\r")]) == decode_all([STREAM])


def test_comment_only_block_is_a_comment() -> None:
    decoder = SSEDecoder()
    comment, data = decoder.feed(b": ping\n\ndata: x\n\n")
    assert comment.is_comment
    assert not data.is_comment


def test_empty_data_field_is_not_a_comment() -> None:
    (event,) = SSEDecoder().feed(b"data:\n\n")
    assert event.data == ""
    assert not event.is_comment


def test_incomplete_event_is_held_then_flushed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"partial"') == []
    assert decoder.pending
    tail = decoder.flush()
    assert tail is not None
    assert tail.data == '{"partial"'
    assert tail.raw.endswith(b"\n\n")
    assert decoder.flush() is None


def test_invalid_utf8_does_not_raise() -> None:
    (event,) = SSEDecoder().feed(b"data: \xff\xfe\n\n")
    assert event.raw == b"data: \xff\xfe\n\n"


def test_field_without_space_and_unknown_fields() -> None:
    (event,) = SSEDecoder().feed(b"id: 7\nretry: 100\nevent:x\ndata:y\n\n")
    assert event.event == "x"
    assert event.data == "y"


def test_blank_line_runs_between_events_are_skipped() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"\n\ndata: a\n\n\n\n\ndata: b\n\n\n")
    assert [e.raw for e in events] == [b"data: a\n\n", b"data: b\n\n"]
    assert [e.raw for e in decoder.feed(b"\ndata: c\n\n")] == [b"data: c\n\n"]
    assert not decoder.pending


def test_an_endless_line_is_bounded_and_costs_linear_time() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    decoder.feed(b"data: " + b"x" * 400)
    decoder.feed(b"x" * 400)
    with pytest.raises(SSEEventTooLarge):
        decoder.feed(b"x" * 400)
    assert decoder.feed(b"data: ok\n\n")[0].data == "ok"  # the decoder starts over


def test_an_event_split_in_many_pieces_is_whole() -> None:
    decoder = SSEDecoder()
    wire = b"event: message\r\ndata: " + b"y" * 5000 + b"\r\n\r\ndata: next\n\n"
    events = []
    for index in range(0, len(wire), 7):
        events.extend(decoder.feed(wire[index : index + 7]))
    assert [e.event for e in events] == ["message", None]
    assert events[0].data == "y" * 5000 and events[1].data == "next"


@pytest.mark.parametrize(
    "raw",
    [
        b"event: response.output_text.delta\ndata: {}\n\n",
        b"event: first\nevent: second\ndata: x\n\n",  # the last name wins
        b"event: ping\ndata: x\neventually: not a name\n\n",
        b"event: \xff\xfebroken\ndata: x\n\n",
        b"event:tight\ndata: x\n\n",
        b"data: x\nevent: late\n\n",
    ],
)
def test_the_name_read_from_the_first_line_is_the_parsed_name(raw: bytes) -> None:
    quick, parsed = SSEEvent(raw), SSEEvent(raw)
    _ = parsed.data  # parses the whole block
    assert quick.event == parsed.event
    assert quick.data == parsed.data
