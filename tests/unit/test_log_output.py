"""logs.py output safety: text lines cannot be forged, and a blocked stream blocks no caller."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from llm_api_router.logs import (
    TEXT_FIELD_LIMIT,
    BackgroundStreamHandler,
    JsonFormatter,
    TextFormatter,
    logging_config,
)

FORGED = "2026-01-01 00:00:00,000 INFO llm_api_router.access: forged"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("llm_api_router.access", logging.INFO, __file__, 1, msg, args, None)
    for name, value in extra.items():
        setattr(rec, name, value)
    return rec


@pytest.mark.parametrize(
    "evil",
    [
        f"x\r\n{FORGED}",
        f"x\n{FORGED}",
        f"x\r{FORGED}",
        f"x\u2028{FORGED}",
        f"x\x85{FORGED}",
        f"x\x0b{FORGED}",
    ],
)
def test_a_model_name_cannot_forge_a_text_line(evil: str) -> None:
    line = TextFormatter().format(record("openai %s -> 200", evil, model=evil, status=200))
    assert len(line.splitlines()) == 1
    assert "forged" in line  # shown, escaped, on the same line
    assert "status=200" in line


def test_control_characters_are_escaped_visibly() -> None:
    line = TextFormatter().format(record("m %s", "a\x1b[31mred\x00\r\n\t\u202eb", model="a\x1b[2J"))
    assert "\x1b" not in line and "\x00" not in line and "\u202e" not in line
    assert "a\\x1b[31mred\\x00\\r\\n\\t\\u202eb" in line
    assert 'model="a\\u001b[2J"' in line  # JSON-quoted, JSON-escaped


def test_values_with_spaces_or_equals_are_quoted() -> None:
    line = TextFormatter().format(record("m", model="gpt x status=500", provider="backup"))
    assert 'model="gpt x status=500"' in line
    assert "provider=backup" in line


def test_fields_are_bounded() -> None:
    huge = "m" * 1_000_000
    line = TextFormatter().format(record("openai %s -> 200", huge, model=huge, extra=[huge]))
    assert len(line) < 4 * (TEXT_FIELD_LIMIT + 100)
    assert "more characters]" in line


def test_a_traceback_stays_indented_under_its_line() -> None:
    try:
        raise ValueError(f"bad\n{FORGED}")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    first, *rest = TextFormatter().format(rec).split("\n")
    assert first.endswith("x: failed")
    assert rest and all(line.startswith("  ") for line in rest)


def test_json_format_stays_one_line() -> None:
    line = JsonFormatter().format(record("openai %s", "x\r\ny", model="a\nb"))
    assert len(line.splitlines()) == 1
    assert json.loads(line)["model"] == "a\nb"


# -- BackgroundStreamHandler ----------------------------------------------------------------


class BlockingStream(io.StringIO):
    """A stream whose writes block until released, like a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(10)
        return super().write(text)


@pytest.fixture
def blocked() -> Iterator[tuple[BackgroundStreamHandler, BlockingStream]]:
    stream = BlockingStream()
    handler = BackgroundStreamHandler(stream, capacity=10)
    handler.setFormatter(logging.Formatter("%(message)s"))
    yield handler, stream
    stream.release.set()
    handler.close()


def test_a_blocked_stream_never_blocks_the_caller(
    blocked: tuple[BackgroundStreamHandler, BlockingStream],
) -> None:
    handler, stream = blocked
    handler.handle(record("first"))
    assert stream.entered.wait(5), "the writer thread never wrote"
    # The writer is now stuck in write(): 10 records fit in the queue, the rest are dropped.
    caller = threading.Thread(
        target=lambda: [handler.handle(record("r%d", i)) for i in range(100)], daemon=True
    )
    caller.start()
    caller.join(5)
    assert not caller.is_alive(), "logging blocked its caller"
    assert handler.dropped == 90
    stream.release.set()
    handler.flush()
    lines = stream.getvalue().splitlines()
    notice = "90 log records dropped: the log stream was not read fast enough"
    assert lines.count(notice) == 1
    lines.remove(notice)
    assert lines == ["first", *(f"r{i}" for i in range(10))]


def test_close_writes_what_is_queued() -> None:
    stream = io.StringIO()
    handler = BackgroundStreamHandler(stream)
    handler.setFormatter(TextFormatter())
    for i in range(50):
        handler.handle(record("line %d", i))
    handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 50
    assert lines[-1].endswith("line 49")
    handler.close()  # closing twice is harmless


def test_close_gives_up_on_a_stream_blocked_for_good() -> None:
    stream = BlockingStream()
    handler = BackgroundStreamHandler(stream, capacity=1)
    handler.handle(record("stuck"))
    assert stream.entered.wait(5)
    handler.handle(record("queued"))
    closer = threading.Thread(target=handler.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() waited forever on a blocked stream"
    stream.release.set()


def test_the_server_logging_config_writes_from_a_background_thread() -> None:
    config = logging_config("text", "info")
    assert config["handlers"]["stderr"]["class"] == "llm_api_router.logs.BackgroundStreamHandler"
