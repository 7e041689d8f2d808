"""A sans-IO Server-Sent Events splitter: feed bytes, get whole events back.

Each event keeps its wire form (``raw``, normalised to ``\\n`` line endings and ending in a
blank line) so the relay forwards exactly what it parsed, plus the parsed ``event`` name
and ``data`` for the stream trackers.  Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEEvent"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event: its wire bytes, ``event:`` name (None if absent) and joined ``data:``."""

    raw: bytes
    event: str | None
    data: str

    @property
    def is_comment(self) -> bool:
        """True for comment/keep-alive blocks that carry neither a name nor data."""
        return self.event is None and not self.data and not _has_data_field(self.raw)


def _has_data_field(raw: bytes) -> bool:
    return raw.startswith(b"data") or b"\ndata" in raw


class SSEDecoder:
    """Incremental splitter.  ``feed()`` returns the events completed by this chunk."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # Keep a trailing CR: it may be the first half of a CRLF split across chunks.
            held = b"\r" if buffer.endswith(b"\r") else b""
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            # Blank lines between events are not events of their own.
            stripped = block.lstrip(b"\n")
            if stripped:
                events.append(_parse(stripped))
        self._buffer = buffer[start:]
        return events

    def flush(self) -> SSEEvent | None:
        """The unterminated remainder at end of stream, if any (a cut or sloppy upstream)."""
        rest = self._buffer.strip(b"\r\n")
        self._buffer = b""
        return _parse(rest) if rest else None

    @property
    def pending(self) -> bool:
        """True when bytes of an incomplete event are buffered."""
        return bool(self._buffer.strip(b"\r\n"))


def _parse(block: bytes) -> SSEEvent:
    event: str | None = None
    data: list[str] = []
    text = block.decode("utf-8", errors="replace")
    for line in text.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    return SSEEvent(raw=block + b"\n\n", event=event, data="\n".join(data))
