"""Keeping provider keys out of every byte an upstream sends back (sans-IO).

Upstreams echo credentials: proxies and self-hosted servers quote a bad ``Authorization``
header in their error bodies, and the same text can come inside a stream.  Every answer the
router relays passes through a :class:`SecretScrubber` first.  Which text is a key is the
one rule of :mod:`llm_api_router.redaction` (long keys anywhere, short ones as whole
tokens); this module adds what a relay needs: a cheap test that skips the rule for the
usual chunk that holds no key, and a key split across two reads still being found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from llm_api_router.redaction import MIN_SUBSTRING_LENGTH, REDACTED, SecretRedactor
from llm_api_router.upstream import UpstreamResponse

__all__ = ["MASK", "ScrubbedResponse", "SecretScrubber", "StreamScrubber"]

MASK = REDACTED.encode()
#: Bytes of context kept before a seam: the token rule may look two bytes back.
_SEAM = 2


class SecretScrubber:
    """Replaces the given secrets in bytes; one instance serves the whole app."""

    __slots__ = ("_any_key", "_key_bytes", "_key_texts", "_keys", "_redactor")

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if s}
        self._keys = tuple(sorted((s.encode() for s in unique), key=len, reverse=True))
        self._key_texts = tuple(sorted(unique, key=len, reverse=True))
        self._redactor = SecretRedactor(unique)
        # Every byte value some key contains: a read ending in any other byte (an SSE event
        # ends in a newline) cannot end with the start of a key.
        self._key_bytes = frozenset(b for key in self._keys for b in key)
        # One search for every key's text (a plain substring match, longest first).
        self._any_key = (
            re.compile(b"|".join(re.escape(key) for key in self._keys)) if self._keys else None
        )

    def __bool__(self) -> bool:
        return bool(self._keys)

    def scrub(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by ``[REDACTED]``."""
        for key in self._keys:
            if key in data:  # a plain search first: most chunks hold no key at all
                return self._redactor.scrub_bytes(data)
        return data

    def is_plain(self, data: bytes) -> bool:
        """Nothing to scrub and nothing to hold back in non-empty ``data``: no key text in
        it, and its last byte cannot begin a key (the usual read: an SSE event ends in a
        newline)."""
        any_key = self._any_key
        return data[-1] not in self._key_bytes and (any_key is None or not any_key.search(data))

    def holds_key(self, data: bytes) -> bool:
        """Whether the text of some key appears in ``data`` (the rule then decides)."""
        return self._any_key is not None and self._any_key.search(data) is not None

    def scrub_text(self, text: str) -> str:
        """The same for a header value or other text."""
        for key in self._key_texts:
            if key in text:
                return self._redactor(text)
        return text

    def held_suffix(self, data: bytes) -> int:
        """How many trailing bytes could be the start of a secret split across reads."""
        if not data or data[-1] not in self._key_bytes:
            return 0  # the usual case, decided by one byte
        hold = 0
        tail_start = max(0, len(data) - len(self._keys[0])) if self._keys else len(data)
        for key in self._keys:
            first = key[:1]
            limit = len(key) if len(key) < MIN_SUBSTRING_LENGTH else len(key) - 1
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
        self._prev = b""  # the last bytes sent: tell a token boundary at the seam

    def whole(self, data: bytes) -> bytes:
        """A whole body, read at once: nothing to hold back."""
        return self._scrubber.scrub(data)

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk if self._held else chunk
        scrubber = self._scrubber
        if data and scrubber.is_plain(data):  # decided in one call
            self._held = b""
            self._prev = data[-_SEAM:]
            return data
        hold = scrubber.held_suffix(data) if chunk else 0
        ready, self._held = (data[:-hold], data[-hold:]) if hold else (data, b"")
        return self._emit(ready)

    def flush(self) -> bytes:
        data, self._held = self._held, b""
        return self._emit(data)

    def _emit(self, data: bytes) -> bytes:
        if not data:
            return data
        if not self._scrubber.holds_key(data):
            # No key in it, and none can straddle the seam: what was sent never ends with
            # the start of a key (that part is held back).
            self._prev = data[-_SEAM:]
            return data
        prev = self._prev
        self._prev = (prev + data)[-_SEAM:]
        return self._scrubber.scrub(prev + data)[len(prev) :]


class ScrubbedResponse:
    """An upstream response whose body comes back with every provider key masked."""

    __slots__ = ("_response", "_scrub")

    def __init__(self, response: UpstreamResponse, scrub: StreamScrubber) -> None:
        self._response = response
        self._scrub = scrub

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        return self._scrub.whole(await self._response.read())

    async def next_chunk(self) -> bytes:
        scrub = self._scrub
        while True:
            chunk = await self._response.next_chunk()
            if not chunk:
                return scrub.flush()
            out = scrub.feed(chunk)
            if out:
                return out

    def close(self) -> None:
        self._response.close()

    def release(self) -> None:
        self._response.release()

    def limit_wait(self, seconds: float) -> None:
        self._response.limit_wait(seconds)
