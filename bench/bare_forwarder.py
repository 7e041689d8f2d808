"""The barest Python forwarder: the floor any Python router can reach on this machine.

A raw ASGI app (no framework, no routing, no JSON parsing) on uvicorn with uvloop + httptools
and one shared, pooled async HTTP client.  Every request's body is POSTed to
``{--upstream}{request path}``; the response is returned whole, or streamed chunk by chunk
when the upstream answers ``text/event-stream``.  ``GET /health`` answers 200 locally.

``--client`` picks the HTTP client (aiohttp, httpx or httpx2), so the same file is the
benchmark's comparison of async HTTP clients.

    python bench/bare_forwarder.py --client aiohttp --port 18083 --upstream http://127.0.0.1:18081
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[str, str]]

CLIENTS = ("aiohttp", "httpx", "httpx2")
# Request headers passed upstream (a real router would rewrite the credentials).
FORWARD_REQUEST_HEADERS = frozenset(
    {b"content-type", b"authorization", b"x-api-key", b"anthropic-version", b"accept"}
)
# Response headers passed back; hop-by-hop ones and content-length are the server's business.
PASS_RESPONSE_HEADERS = frozenset({"content-type", "retry-after", "x-request-id", "request-id"})
BAD_GATEWAY = b'{"error":{"message":"upstream request failed","type":"bad_gateway"}}'


def _is_sse(content_type: str) -> bool:
    return content_type.startswith("text/event-stream")


def _response_headers(items: Any) -> list[tuple[bytes, bytes]]:
    return [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in items
        if k.lower() in PASS_RESPONSE_HEADERS
    ]


async def _send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Forwarder(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def forward(self, url: str, headers: Headers, body: bytes, send: Send) -> None: ...


class AiohttpForwarder:
    def __init__(self, pool: int, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout
        self.session: Any = None

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.pool, limit_per_host=0, keepalive_timeout=120)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def forward(self, url: str, headers: Headers, body: bytes, send: Send) -> None:
        async with self.session.post(url, data=body, headers=headers) as resp:
            out = _response_headers(resp.headers.items())
            if not _is_sse(resp.headers.get("content-type", "")):
                await _send_whole(send, resp.status, out, await resp.read())
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class HttpxForwarder:
    """httpx and httpx2 (the fork the openai/anthropic SDKs use) share one API."""

    def __init__(self, module_name: str, pool: int, timeout: float) -> None:
        self.module: Any = importlib.import_module(module_name)
        self.pool = pool
        self.timeout = timeout
        self.client: Any = None

    async def start(self) -> None:
        httpx = self.module
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=self.pool, max_keepalive_connections=self.pool, keepalive_expiry=120
            ),
            timeout=httpx.Timeout(self.timeout),
            trust_env=False,
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def forward(self, url: str, headers: Headers, body: bytes, send: Send) -> None:
        request = self.client.build_request("POST", url, content=body, headers=headers)
        resp = await self.client.send(request, stream=True)
        try:
            out = _response_headers(resp.headers.items())
            if not _is_sse(resp.headers.get("content-type", "")):
                await _send_whole(send, resp.status_code, out, await resp.aread())
                return
            await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await resp.aclose()


def make_forwarder(client: str, pool: int, timeout: float) -> Forwarder:
    if client == "aiohttp":
        return AiohttpForwarder(pool, timeout)
    return HttpxForwarder(client, pool, timeout)


class BareApp:
    """Raw ASGI 3 application."""

    def __init__(self, upstream: str, forwarder: Forwarder) -> None:
        self.upstream = upstream.rstrip("/")
        self.forwarder = forwarder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.forwarder.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.forwarder.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == "/health":
            await _send_whole(send, 200, [(b"content-type", b"text/plain")], b"ok")
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k in FORWARD_REQUEST_HEADERS
        ]
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.forwarder.forward(
                self.upstream + path, headers, b"".join(chunks), tracking_send
            )
        except Exception:
            if started:
                raise
            await _send_whole(send, 502, [(b"content-type", b"application/json")], BAD_GATEWAY)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=CLIENTS, default="aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18083)
    parser.add_argument("--upstream", default="http://127.0.0.1:18081", help="scheme://host:port")
    parser.add_argument("--pool", type=int, default=512, help="max upstream connections")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    app = BareApp(args.upstream, make_forwarder(args.client, args.pool, args.timeout))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        interface="asgi3",
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
