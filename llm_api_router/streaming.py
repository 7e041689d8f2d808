"""Relaying a committed SSE stream to the client, and never presenting a cut one as whole.

:func:`first_events` reads a stream up to its commit point (its first event that carries
output), so the dispatcher can still fall back on what came before it.

:class:`StreamRelay` forwards each upstream event as soon as it is complete.  It ends the
client's stream with the family's native error event when the upstream cuts the stream,
stalls past ``timeout`` or sends an error event; it completes a naturally finished stream
whose upstream forgot its terminal marker.  The upstream response is closed on every path
(including the client going away), or released to the pool after a complete stream.
:func:`stream_to_client` delivers a relay over ASGI and cancels it the moment the client
disconnects.  :class:`OpenStreams` lists the relays being delivered, so a shutdown can end
each one with a native error event (:meth:`StreamRelay.interrupt`).

This is the path every relayed event takes, so it does per event only what must be done
per event: one read, one split, one byte check (or parse) per event, one ASGI send per read
(whatever number of events it brought, the last one together with the end of the body).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

from starlette.types import Receive, Send

from llm_api_router.disconnect import ClientGone, ClientWatch
from llm_api_router.errors import UpstreamDisconnected, UpstreamTimeout, UpstreamTransportError
from llm_api_router.families import ApiFamily, StreamTracker
from llm_api_router.sse import SSEDecoder, SSEEvent, SSEEventTooLarge
from llm_api_router.upstream import UpstreamResponse

__all__ = [
    "DEFAULT_FINISH_GRACE",
    "MAX_PREAMBLE_BYTES",
    "OpenStreams",
    "RawRelay",
    "StreamOutcome",
    "StreamRelay",
    "first_events",
    "stream_to_client",
]

#: After a natural finish, how long to wait for the upstream's own terminal marker.
DEFAULT_FINISH_GRACE = 0.5


#: Bytes of output-free events (SPEC 9's preamble) held back before the commit, at most.
MAX_PREAMBLE_BYTES = 64 * 1024


async def first_events(
    response: UpstreamResponse, decoder: SSEDecoder, tracker: StreamTracker
) -> list[SSEEvent] | None:
    """Events up to and including the first that carries output; None if none came.

    Comments and output-free events (``response.created``, ``message_start``, a role-only
    chunk...) are held back, a bounded amount, so an error right after them still falls
    back (SPEC section 9).
    """
    events: list[SSEEvent] = []
    held = 0
    while True:
        chunk = await response.next_chunk()
        if not chunk:
            rest = decoder.flush()
            if rest is not None:
                events.append(rest)
            return events if any(not e.is_comment for e in events) else None
        held += len(chunk)
        try:
            fed = decoder.feed(chunk)
        except SSEEventTooLarge:
            raise UpstreamDisconnected("event_too_large") from None
        events.extend(fed)  # every event of this read, so none is lost at the commit
        if any(not e.is_comment and not tracker.is_preamble(e) for e in fed):
            return events
        if held > MAX_PREAMBLE_BYTES and any(not e.is_comment for e in events):
            return events


class StreamOutcome:
    """How a relayed stream ended (values used in logs, metrics and health)."""

    COMPLETE = "complete"
    CUT = "cut"
    STALLED = "stalled"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_DISCONNECTED = "client_disconnected"
    INTERRUPTED = "interrupted"  # ended by the router itself (shutdown), not the provider's fault

    FAILURES = frozenset({CUT, STALLED, UPSTREAM_ERROR})


class StreamRelay:
    """One committed upstream stream; iterate :meth:`body` exactly once (or drive it with
    :meth:`start`, :meth:`next_piece` and :meth:`settle`, as :func:`stream_to_client` does)."""

    #: Always ends with a terminating chunk: failures are told in a native error event.
    clean_end = True

    def __init__(
        self,
        family: ApiFamily,
        response: UpstreamResponse,
        decoder: SSEDecoder,
        tracker: StreamTracker,
        first: bytes,
        *,
        provider: str,
        stall_timeout: float,
        on_end: Callable[[str], None],
        finish_grace: float = DEFAULT_FINISH_GRACE,
    ) -> None:
        self._family = family
        self._response = response
        self._decoder = decoder
        self._tracker = tracker
        self._first = first
        self._provider = provider
        self._stall_timeout = stall_timeout
        self._on_end = on_end
        self._finish_grace = finish_grace
        self._stop: bytes | None = None
        self._upstream_open = True
        self._in_grace = False
        self._on_final: Callable[[bytes], None] | None = None
        self.outcome: str | None = None

    def on_final(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback`` with the stream's final event (the whole answer), if it has one."""
        self._on_final = callback

    async def body(self) -> AsyncGenerator[bytes, None]:
        """The bytes to send the client, piece by piece."""
        try:
            yield self.start()
            while self.outcome is None:
                out = await self.next_piece()
                if out:
                    yield out
        finally:
            self.settle()

    def start(self) -> bytes:
        """The first piece: the events read before the commit (ends a stream they complete)."""
        if self._tracker.terminal:
            self._end(StreamOutcome.COMPLETE)
        return self._first

    def settle(self) -> None:
        """Done with the upstream: its connection is kept after a complete stream, closed
        otherwise; a stream that did not end yet ends as a client disconnect.  Idempotent."""
        if self._upstream_open:
            self._upstream_open = False
            if self.outcome == StreamOutcome.COMPLETE:
                self._response.release()
            else:
                self._response.close()
        if self.outcome is None:
            self._end(StreamOutcome.CLIENT_DISCONNECTED)

    async def next_piece(self) -> bytes:
        """The next piece to relay (maybe empty); sets ``outcome`` when the stream is over."""
        if self._stop is not None:
            return self._stopped()
        tracker = self._tracker
        if tracker.finished and not self._in_grace:
            # From the natural finish on, wait finish_grace (not `timeout`) for each chunk.
            self._in_grace = True
            self._response.limit_wait(self._finish_grace)
        try:
            chunk = await self._response.next_chunk()
        except UpstreamTimeout:
            if self._stop is not None:
                return self._stopped()
            if tracker.finished:  # and the terminal marker did not come
                return self._complete()
            return self._fail(
                StreamOutcome.STALLED,
                504,
                f"The upstream provider '{self._provider}' sent nothing for "
                f"{self._stall_timeout:g} s; the stream was ended before its natural end.",
            )
        except UpstreamTransportError:
            if self._stop is not None:  # interrupt() closed the upstream under us
                return self._stopped()
            if tracker.finished:
                return self._complete()
            return self._cut()
        if not chunk:
            if self._stop is not None:
                return self._stopped()
            rest = self._decoder.flush()
            tail = b""
            if rest is not None:
                tail = rest.raw
                if not rest.is_comment and tracker.observe(rest) is not None:
                    self._end(StreamOutcome.UPSTREAM_ERROR)
                    return tail
            if tracker.terminal:
                self._end(StreamOutcome.COMPLETE)
                return tail
            return tail + (self._complete() if tracker.finished else self._cut())
        try:
            events = self._decoder.feed(chunk)
        except SSEEventTooLarge:
            return self._fail(
                StreamOutcome.CUT,
                502,
                f"The upstream provider '{self._provider}' sent an event too large to relay; "
                "the answer is incomplete.",
            )
        pieces = []
        for event in events:
            pieces.append(event.raw)
            if event.is_comment:
                continue
            info = tracker.observe(event)
            if info is not None:
                self._end(StreamOutcome.UPSTREAM_ERROR)  # relayed as sent: already native
                pieces.append(tracker.after_error(info))
                break
            if tracker.terminal:
                self._end(StreamOutcome.COMPLETE)
                break
        if len(pieces) == 1:  # the usual case: one event per read
            return pieces[0]
        return b"".join(pieces)

    def abort(self) -> None:
        """Close the upstream now (idempotent); the stream ends as a client disconnect."""
        if self._upstream_open:
            self._upstream_open = False
            self._response.close()
        if self.outcome is None:
            self._end(StreamOutcome.CLIENT_DISCONNECTED)

    def interrupt(self, status: int, message: str, *, code: str) -> None:
        """End the stream from outside (a shutdown): the client's next bytes are the family's
        error event, then the end of the body.  The upstream is closed now; idempotent."""
        if self.outcome is not None or self._stop is not None:
            return
        self._stop = self._family.stream_error_event(status, message, code=code)
        self._upstream_open = False
        self._response.close()  # wakes a pending read at once

    def _stopped(self) -> bytes:
        self._end(StreamOutcome.INTERRUPTED)
        return self._stop or b""

    def _complete(self) -> bytes:
        self._end(StreamOutcome.COMPLETE)
        return self._tracker.completion()

    def _cut(self) -> bytes:
        return self._fail(
            StreamOutcome.CUT,
            502,
            f"The upstream provider '{self._provider}' closed the stream before its natural "
            "end; the answer is incomplete.",
        )

    def _fail(self, outcome: str, status: int, message: str) -> bytes:
        self._end(outcome)
        return self._tracker.failure(status, message, f"stream_{outcome}")

    def _end(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self._on_end(outcome)
            final = self._tracker.final
            if final is not None and self._on_final is not None:
                self._on_final(final)


class RawRelay:
    """A committed answer of any other type (audio, a download, JSONL), relayed as it comes.

    It has no events to end with an error: a cut or a stall ends the client's response
    without its terminating chunk, so the client sees a truncated body, never a whole one.
    """

    clean_end = True

    def __init__(self, response: UpstreamResponse, *, stall_timeout: float) -> None:
        self._response = response
        self._stall_timeout = stall_timeout
        self.outcome: str | None = None

    async def body(self) -> AsyncGenerator[bytes, None]:
        try:
            while True:
                try:
                    chunk = await self._response.next_chunk()
                except UpstreamTimeout:
                    self._truncate(StreamOutcome.STALLED)
                    return
                except UpstreamTransportError:
                    self._truncate(StreamOutcome.CUT)
                    return
                if not chunk:
                    self.outcome = StreamOutcome.COMPLETE
                    return
                yield chunk
        finally:
            self._response.close()
            if self.outcome is None:
                self.outcome = StreamOutcome.CLIENT_DISCONNECTED

    def _truncate(self, outcome: str) -> None:
        self.outcome = outcome
        self.clean_end = False

    def abort(self) -> None:
        self._response.close()
        if self.outcome is None:
            self.outcome = StreamOutcome.CLIENT_DISCONNECTED


class OpenStreams:
    """The relays being delivered to clients right now (one registry per app)."""

    __slots__ = ("_relays",)

    def __init__(self) -> None:
        self._relays: set[StreamRelay | RawRelay] = set()

    def __len__(self) -> int:
        return len(self._relays)

    def add(self, relay: StreamRelay | RawRelay) -> None:
        self._relays.add(relay)

    def discard(self, relay: StreamRelay | RawRelay) -> None:
        self._relays.discard(relay)

    def interrupt_all(self, status: int, message: str, *, code: str) -> int:
        """:meth:`StreamRelay.interrupt` every open stream; how many there were.

        A raw relay has no error event: it is closed, and its client sees a truncated body.
        """
        relays = list(self._relays)
        for relay in relays:
            if isinstance(relay, StreamRelay):
                relay.interrupt(status, message, code=code)
            else:
                relay.abort()
        return len(relays)


async def stream_to_client(
    relay: StreamRelay | RawRelay,
    status: int,
    headers: list[tuple[bytes, bytes]],
    receive: Receive | ClientWatch,
    send: Send,
    on_done: Callable[[float | None, str], None],
    streams: OpenStreams | None = None,
) -> None:
    """Send a committed relay over ASGI; a client disconnect cancels it at once.

    ``on_done(first_byte_time, outcome)`` is called exactly once when the exchange is over,
    with the ``time.perf_counter()`` of the first body byte sent (None if none was).
    While it is sent, the relay is listed in ``streams``.  ``receive`` may be the request's
    :class:`ClientWatch` (which the caller closes), so the watcher task that guarded the
    dispatch keeps watching the stream.
    """
    if streams is not None:
        streams.add(relay)
    events = relay if isinstance(relay, StreamRelay) else None
    body = None if events is not None else relay.body()
    first_byte: float | None = None

    async def send_events(relay: StreamRelay) -> None:
        nonlocal first_byte
        piece = relay.start()
        next_piece = relay.next_piece
        while relay.outcome is None:
            if piece:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                if first_byte is None:
                    first_byte = time.perf_counter()
            piece = await next_piece()
        # The last piece and the end of the body go out in one write.
        await send({"type": "http.response.body", "body": piece, "more_body": False})
        if first_byte is None:
            first_byte = time.perf_counter()

    async def send_all() -> None:
        nonlocal first_byte
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if events is not None:
            await send_events(events)
            return
        assert body is not None
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if first_byte is None:
                first_byte = time.perf_counter()
        if relay.clean_end:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    watch = receive if isinstance(receive, ClientWatch) else ClientWatch(receive)
    try:
        await watch.guard(send_all())
    except (ClientGone, OSError):
        pass  # the client went away: the relay's upstream is closed below
    finally:
        if watch is not receive:
            watch.close()
        if streams is not None:
            streams.discard(relay)
        if events is not None:
            events.settle()
        elif body is not None:
            await body.aclose()
            relay.abort()
        on_done(first_byte, relay.outcome or StreamOutcome.CLIENT_DISCONNECTED)
