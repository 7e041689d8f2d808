"""A sans-IO Server-Sent Events splitter: feed bytes, get whole events back.

Each event keeps its wire form (``raw``, normalised to ``\\n`` line endings and ending in a
blank line) so the relay forwards exactly what it parsed.  Its ``event`` name and joined
``data`` are parsed only when asked for, with shortcuts for the shapes LLM APIs send
(``data: ...`` and ``event: ...\\ndata: ...``).  Nothing here does I/O.
"""

from __future__ import annotations

__all__ = ["SSEDecoder", "SSEEvent"]


class SSEEvent:
    """One event: its wire bytes, ``event:`` name (None if absent) and joined ``data:``."""

    __slots__ = ("_data", "_event", "_has_data", "_parsed", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._parsed = False
        self._event: str | None = None
        self._data = ""
        self._has_data = False

    @property
    def event(self) -> str | None:
        if not self._parsed:
            self._parse()
        return self._event

    @property
    def data(self) -> str:
        if not self._parsed:
            self._parse()
        return self._data

    @property
    def is_comment(self) -> bool:
        """True for comment/keep-alive blocks that carry neither a name nor data."""
        if self.raw.startswith((b"data:", b"event:")):
            return False  # the usual case, decided without parsing
        if not self._parsed:
            self._parse()
        return self._event is None and not self._has_data

    def __repr__(self) -> str:
        return f"SSEEvent({self.raw!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SSEEvent) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def _parse(self) -> None:
        self._parsed = True
        block = self.raw[:-2]
        first, newline, rest = block.partition(b"\n")
        if not newline:  # one line: the usual OpenAI chunk
            self._field(first)
            return
        if first.startswith(b"event:") and b"\n" not in rest and rest.startswith(b"data:"):
            self._field(first)  # the usual Anthropic event
            self._field(rest)
            return
        data: list[str] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data"):
                value = self._value(line, 4)
                if value is not None:
                    data.append(value)
                    continue
            self._field(line)
        if data:
            self._has_data = True
            self._data = "\n".join(data)

    def _field(self, line: bytes) -> None:
        if line.startswith(b"data"):
            value = self._value(line, 4)
            if value is not None:
                self._has_data = True
                self._data = value
        elif line.startswith(b"event"):
            value = self._value(line, 5)
            if value is not None:
                self._event = value

    @staticmethod
    def _value(line: bytes, name_length: int) -> str | None:
        """The value of a ``name: value`` line, or None if the name is longer than expected."""
        rest = line[name_length:]
        if not rest:
            return ""
        if rest[:1] != b":":
            return None
        start = 2 if rest[1:2] == b" " else 1
        return rest[start:].decode("utf-8", errors="replace")


class SSEDecoder:
    """Incremental splitter.  ``feed()`` returns the events completed by this chunk."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # Keep a trailing CR: it may be the first half of a CRLF split across chunks.
            held = b"\r" if buffer.endswith(b"\r") else b""
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        *blocks, self._buffer = buffer.split(b"\n\n")
        # A run of blank lines between events is not an event of its own.
        stripped = (block.lstrip(b"\n") for block in blocks)
        return [SSEEvent(block + b"\n\n") for block in stripped if block]

    def flush(self) -> SSEEvent | None:
        """The unterminated remainder at end of stream, if any (a cut or sloppy upstream)."""
        rest = self._buffer.strip(b"\r\n")
        self._buffer = b""
        return SSEEvent(rest + b"\n\n") if rest else None

    @property
    def pending(self) -> bool:
        """True when bytes of an incomplete event are buffered."""
        return bool(self._buffer.strip(b"\r\n"))
