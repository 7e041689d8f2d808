"""The scrubber: never a key in what a client receives, never mangled unrelated text."""

from __future__ import annotations

from llm_api_router.scrub import SecretScrubber

LONG = "sk-ant-api03-0123456789abcdefXYZ"


def test_long_keys_are_replaced_anywhere() -> None:
    scrubber = SecretScrubber([LONG])
    assert scrubber.scrub(f"Bearer {LONG}".encode()) == b"Bearer [REDACTED]"
    assert scrubber.scrub(f"x{LONG}y".encode()) == b"x[REDACTED]y"


def test_short_keys_are_replaced_only_as_whole_tokens() -> None:
    scrubber = SecretScrubber(["test", "x"])
    assert scrubber.scrub(b"latest-test-model") == b"latest-test-model"
    assert scrubber.scrub(b"context_length_exceeded") == b"context_length_exceeded"
    assert scrubber.scrub(b"Authorization: Bearer test") == b"Authorization: Bearer [REDACTED]"
    assert scrubber.scrub(b'{"key":"x"}') == b'{"key":"[REDACTED]"}'


def test_a_key_split_across_reads_is_found_and_events_are_not_delayed() -> None:
    scrubber = SecretScrubber([LONG])
    stream = scrubber.stream()
    data = f'data: {{"text": "{LONG}"}}\n\n'.encode()
    for cut in range(1, len(data)):
        stream = scrubber.stream()
        out = stream.feed(data[:cut]) + stream.feed(data[cut:])
        assert out == b'data: {"text": "[REDACTED]"}\n\n', cut
    stream = scrubber.stream()
    assert stream.feed(b"data: {}\n\n") == b"data: {}\n\n"  # nothing held back


def test_held_bytes_that_were_no_key_come_out_on_flush() -> None:
    scrubber = SecretScrubber([LONG])
    stream = scrubber.stream()
    assert stream.feed(b"abc sk-ant") == b"abc "
    assert stream.flush() == b"sk-ant"


def test_no_secrets_means_nothing_to_do() -> None:
    assert not SecretScrubber([])
    assert SecretScrubber([]).scrub(b"anything") == b"anything"


def test_a_short_key_ending_a_sentence_or_in_a_query_is_scrubbed() -> None:
    scrubber = SecretScrubber(["test"])
    assert scrubber.scrub(b"Invalid API key: test.") == b"Invalid API key: [REDACTED]."
    assert scrubber.scrub(b"GET /v1?key=test&x=1") == b"GET /v1?key=[REDACTED]&x=1"
    assert scrubber.scrub(b"test.example.com") == b"test.example.com"
