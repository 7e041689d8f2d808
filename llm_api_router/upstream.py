"""The upstream HTTP client: send one attempt, hand back its response.  No routing here.

:class:`Transport` is the seam the rest of the router depends on; :class:`AiohttpTransport`
is the real one (one pooled, keep-alive ``aiohttp.ClientSession`` owned by the app's
lifespan).  Unit tests inject an in-process transport instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Protocol, Self

import aiohttp

from llm_api_router.errors import map_client_error

__all__ = ["AiohttpTransport", "Transport", "UpstreamResponse"]

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
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

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
        try:
            return await self._response.content.readany()
        except Exception as exc:
            raise map_client_error(exc) from exc

    def close(self) -> None:
        self._response.close()


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
        return _AiohttpResponse(response)
