"""Keeping provider keys out of every byte an upstream sends back (sans-IO).

Upstreams echo credentials: proxies and self-hosted servers quote a bad ``Authorization``
header in their error bodies, and the same text can come inside a stream.  Every answer the
router relays passes through a :class:`SecretScrubber` first.

The rule that never shows a key and never mangles unrelated text: a long key (a real
secret) is replaced wherever it appears; a short one (``"test"``, ``"x"``: local servers)
only where it stands as a whole token, i.e. not inside a longer run of key characters
(``latest-test-model`` keeps its text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MASK", "SecretScrubber", "StreamScrubber"]

MASK = b"[REDACTED]"
#: Keys at least this long are replaced anywhere; shorter ones only as whole tokens.
LONG_KEY = 16
_KEY_CHARS = rb"A-Za-z0-9_\-.~+/="


class SecretScrubber:
    """Replaces the given secrets in bytes; one instance serves the whole app."""

    __slots__ = ("_keys", "_long", "_short")

    def __init__(self, secrets: Iterable[str]) -> None:
        keys = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)
        self._keys = tuple(keys)
        self._long = tuple(k for k in keys if len(k) >= LONG_KEY)
        short = [k for k in keys if len(k) < LONG_KEY]
        self._short = (
            re.compile(
                rb"(?<!["
                + _KEY_CHARS
                + rb"])(?:"
                + b"|".join(re.escape(k) for k in short)
                + rb")(?!["
                + _KEY_CHARS
                + rb"])"
            )
            if short
            else None
        )

    def __bool__(self) -> bool:
        return bool(self._keys)

    def scrub(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by ``[REDACTED]``."""
        for key in self._long:
            if key in data:
                data = data.replace(key, MASK)
        if self._short is not None:
            data = self._short.sub(MASK, data)
        return data

    def scrub_text(self, text: str) -> str:
        """The same for a header value or other text."""
        scrubbed = self.scrub(text.encode("utf-8", "surrogateescape"))
        return scrubbed.decode("utf-8", "surrogateescape")

    def held_suffix(self, data: bytes) -> int:
        """How many trailing bytes could be the start of a secret split across reads."""
        hold = 0
        tail_start = max(0, len(data) - len(self._keys[0])) if self._keys else len(data)
        for key in self._keys:
            first = key[:1]
            limit = len(key) if len(key) < LONG_KEY else len(key) - 1
            pos = data.find(first, max(tail_start, len(data) - limit))
            while pos != -1:
                size = len(data) - pos
                if size > hold and key.startswith(data[pos:]):
                    hold = size
                    break
                pos = data.find(first, pos + 1)
        return hold

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)


class StreamScrubber:
    """Scrubs one response read piece by piece: a secret split across reads is still found.

    Only bytes that could begin a secret are held back, so an SSE event (which ends in a
    blank line) is never delayed.
    """

    __slots__ = ("_held", "_prev", "_scrubber")

    def __init__(self, scrubber: SecretScrubber) -> None:
        self._scrubber = scrubber
        self._held = b""
        self._prev = b""  # the last byte sent: tells a token boundary at the seam

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk if self._held else chunk
        hold = self._scrubber.held_suffix(data) if chunk else 0
        ready, self._held = (data[:-hold], data[-hold:]) if hold else (data, b"")
        return self._emit(ready)

    def flush(self) -> bytes:
        data, self._held = self._held, b""
        return self._emit(data)

    def _emit(self, data: bytes) -> bytes:
        if not data:
            return data
        prev = self._prev
        self._prev = data[-1:]
        return self._scrubber.scrub(prev + data)[len(prev) :]
