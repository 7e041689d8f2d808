"""The upstream HTTP client: send one attempt, hand back its response.  No routing here.

:class:`Transport` is the seam the rest of the router depends on; :class:`AiohttpTransport`
is the real one (one pooled, keep-alive ``aiohttp.ClientSession`` owned by the app's
lifespan).  Unit tests inject an in-process transport instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, Self

import aiohttp

from llm_api_router.errors import map_client_error

__all__ = [
    "END_GRACE",
    "LOOP_BEHIND",
    "MAX_END_GRACE",
    "AiohttpTransport",
    "Transport",
    "UpstreamResponse",
]

#: After the last event of a stream, how long the end of its HTTP body may take to arrive
#: before the connection is closed instead of going back to the pool.  It normally follows
#: within a millisecond; an upstream that keeps the connection open is closed promptly.
END_GRACE = 1.0
#: ... unless the event loop is behind: a grace timer that fires this much late means the
#: loop is saturated and may not have read the end yet (at 1,024 paced streams on one core,
#: about one connection in ten was closed and reopened, which saturates it further).  The
#: grace is then renewed, up to :data:`MAX_END_GRACE` in all.
LOOP_BEHIND = 0.1
MAX_END_GRACE = 10.0

_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


class UpstreamResponse(Protocol):
    """An upstream answer whose body has not been read yet.  Always ``close()`` it."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive response headers."""
        ...

    async def read(self) -> bytes:
        """The whole body (raises UpstreamTransportError)."""
        ...

    async def next_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        ...

    def close(self) -> None:
        """Release the connection (drops it if the body was not read to the end)."""
        ...

    def limit_wait(self, seconds: float) -> None:
        """From now on, fail a wait for the next chunk after ``seconds`` instead of the
        request's ``timeout`` (with UpstreamTimeout), e.g. once a stream has finished."""
        ...

    def release(self) -> None:
        """Done with a body that ended well: keep the connection for another request if the
        body's end arrives (at once), drop it otherwise.  Use ``close()`` on every other path."""
        ...


class Transport(Protocol):
    """Sends one request to an upstream.  Errors are raised as UpstreamTransportError."""

    async def request(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float,
        method: str = "POST",
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _AiohttpResponse:
    """One aiohttp response.  A streamed body is read with one stall timer per response,
    not aiohttp's ``sock_read`` timer, which is re-armed on every read from the socket."""

    __slots__ = ("_loop", "_response", "_timeout", "_waiting_since", "_watchdog")

    def __init__(self, response: aiohttp.ClientResponse, timeout: float) -> None:
        self._response = response
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None  # set once streaming starts
        self._waiting_since: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except Exception as exc:  # every aiohttp/OS error maps; see errors.map_client_error
            raise map_client_error(exc) from exc
        finally:
            self._response.release()

    async def next_chunk(self) -> bytes:
        loop = self._loop
        if loop is None:
            loop = self._start_watchdog()
        # The watchdog fails this wait if nothing arrives within the timeout.
        self._waiting_since = loop.time()
        try:
            chunk = await self._response.content.readany()
        except Exception as exc:
            self._waiting_since = None
            raise map_client_error(exc) from exc
        self._waiting_since = None
        return chunk

    def close(self) -> None:
        self._stop_watchdog()
        self._response.close()

    def limit_wait(self, seconds: float) -> None:
        loop = self._loop
        if loop is None:
            loop = self._start_watchdog()
        self._timeout = min(self._timeout, seconds)
        self._stop_watchdog()
        self._watchdog = loop.call_at(loop.time() + self._timeout, self._check_stall)

    def release(self) -> None:
        self._stop_watchdog()
        response = self._response
        if response.content.is_eof():
            response.release()
        else:
            # The last event came before the body's end (the last chunk of the chunked
            # encoding).  aiohttp gives the connection back to the pool itself when that
            # end arrives, which is normally at once; close it if it does not.
            loop = asyncio.get_running_loop()
            due = loop.time() + END_GRACE
            loop.call_at(due, _end_or_close, loop, response, due, due - END_GRACE + MAX_END_GRACE)

    def _start_watchdog(self) -> asyncio.AbstractEventLoop:
        """Replace aiohttp's per-read timer by ours for the rest of this body."""
        loop = self._loop = asyncio.get_running_loop()
        connection = self._response.connection
        if connection is not None and connection.protocol is not None:
            connection.protocol.read_timeout = None  # its next read stops re-arming it
        self._watchdog = loop.call_at(loop.time() + self._timeout, self._check_stall)
        return loop

    def _check_stall(self) -> None:
        """Fail the pending read if it has waited ``timeout``; else check again later."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        since = self._waiting_since
        if since is not None and now - since >= self._timeout - 0.001:
            self._watchdog = None
            self._response.content.set_exception(aiohttp.ServerTimeoutError("stream stalled"))
            return
        self._watchdog = loop.call_at(
            (now if since is None else since) + self._timeout, self._check_stall
        )

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


def _end_or_close(
    loop: asyncio.AbstractEventLoop,
    response: aiohttp.ClientResponse,
    due: float,
    last: float,
) -> None:
    """The end of a released body's grace: close its connection unless the loop is behind."""
    if response.connection is None:
        return  # the end came: aiohttp gave the connection back to the pool
    now = loop.time()
    if now - due > LOOP_BEHIND and now < last:
        due = min(now + END_GRACE, last)
        loop.call_at(due, _end_or_close, loop, response, due, last)
        return
    response.close()


class AiohttpTransport:
    """The production transport: one aiohttp session with a keep-alive pool for every host.

    ``timeout`` bounds connecting and each wait for data (``sock_read``), not the length of
    a whole (streamed) answer.  Cookies are never kept; redirects are not followed.
    """

    def __init__(self, *, keepalive_timeout: float = 30.0) -> None:
        self._keepalive_timeout = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            limit=0, ttl_dns_cache=300, keepalive_timeout=self._keepalive_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float,
        method: str = "POST",
    ) -> UpstreamResponse:
        session = self._session
        if session is None:
            raise RuntimeError("AiohttpTransport used outside its 'async with' block")
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=timeout, sock_read=timeout
            )
            self._timeouts[timeout] = client_timeout
        try:
            response = await session.request(
                method,
                url,
                data=body if body or method not in _BODYLESS else None,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,
            )
        except Exception as exc:
            raise map_client_error(exc) from exc
        return _AiohttpResponse(response, timeout)
