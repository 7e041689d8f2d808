"""A sans-IO Server-Sent Events splitter: feed bytes, get whole events back.

Each event keeps its wire form (``raw``, normalised to ``\\n`` line endings and ending in a
blank line) so the relay forwards exactly what it parsed.  Its ``event`` name and joined
``data`` are parsed only when asked for, with shortcuts for the shapes LLM APIs send
(``data: ...`` and ``event: ...\\ndata: ...``).  Nothing here does I/O.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "SSEEventTooLarge"]


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
            raw = self.raw
            if raw.startswith(b"event: ") and b"\nevent" not in raw:
                # The name leads the block and nothing else names it: read just that line
                # (a tracker that only looks at names skips most events unparsed).
                return raw[7 : raw.index(b"\n")].decode("utf-8", errors="replace")
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


class SSEEventTooLarge(ValueError):
    """An event grew past the decoder's limit without ending (a broken or hostile upstream)."""


#: The largest event the decoder assembles (a Responses ``response.completed`` carries the
#: whole answer, images included, so this is generous).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEDecoder:
    """Incremental splitter.  ``feed()`` returns the events completed by this chunk.

    An unfinished event is kept as a list of pieces, so an endless line costs linear time;
    past ``max_event_bytes`` :class:`SSEEventTooLarge` is raised.
    """

    __slots__ = ("_max", "_parts", "_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        parts = self._parts
        if parts:
            last = parts[-1][-1:]
            if (
                b"\n\n" not in chunk
                and b"\r" not in chunk
                and last != b"\r"
                and not (last == b"\n" and chunk[:1] == b"\n")
            ):
                # Still inside the same event: no need to look at what came before.
                return self._keep(chunk)
            parts.append(chunk)
            buffer = b"".join(parts)
            parts.clear()
            self._size = 0
        else:
            buffer = chunk
        if b"\r" in buffer:
            # Keep a trailing CR: it may be the first half of a CRLF split across chunks.
            held = b"\r" if buffer.endswith(b"\r") else b""
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        *blocks, rest = buffer.split(b"\n\n")
        if rest:
            self._keep(rest)
        # A run of blank lines between events is not an event of its own.
        stripped = (block.lstrip(b"\n") for block in blocks)
        return [SSEEvent(block + b"\n\n") for block in stripped if block]

    def _keep(self, piece: bytes) -> list[SSEEvent]:
        self._parts.append(piece)
        self._size += len(piece)
        if self._size > self._max:
            self._parts.clear()
            self._size = 0
            raise SSEEventTooLarge(f"an event grew past {self._max} bytes without ending")
        return []

    def flush(self) -> SSEEvent | None:
        """The unterminated remainder at end of stream, if any (a cut or sloppy upstream)."""
        rest = b"".join(self._parts).strip(b"\r\n")
        self._parts.clear()
        self._size = 0
        return SSEEvent(rest + b"\n\n") if rest else None

    @property
    def pending(self) -> bool:
        """True when bytes of an incomplete event are buffered."""
        return any(part.strip(b"\r\n") for part in self._parts)
