"""The barest Python forwarder: the floor any Python router can reach on this machine.

No framework, no routing, no JSON parsing: one shared, pooled async HTTP client and a raw app
on one of two servers.  Every request's body is POSTed to ``{--upstream}{request path}``; the
response is returned whole, or streamed chunk by chunk when the upstream answers
``text/event-stream``.  ``GET /health`` answers 200 locally.

``--client`` picks the HTTP client (aiohttp, httpx, httpx2 or pyreqwest) and ``--server`` the
server: uvicorn (ASGI, uvloop + httptools) or granian (RSGI, uvloop, one worker process).  Both
interfaces share one forwarding implementation (``Bare``), so the same file is the benchmark's
comparison of async HTTP clients and servers.

    python bench/bare_forwarder.py --client aiohttp --port 18083 --upstream http://127.0.0.1:18081
    python bench/bare_forwarder.py --server granian --client pyreqwest --port 18083

Granian imports its target in its worker process: ``rsgi_app`` builds the app from the
``BARE_*`` environment variables that ``main`` sets (see ``options_from_env``).
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[str, str]]

CLIENTS = ("aiohttp", "httpx", "httpx2", "pyreqwest")
SERVERS = ("uvicorn", "granian")
# Request headers passed upstream (a real router would rewrite the credentials).
FORWARD_REQUEST_HEADERS = frozenset(
    {"content-type", "authorization", "x-api-key", "anthropic-version", "accept"}
)
FORWARD_REQUEST_HEADERS_B = frozenset(h.encode() for h in FORWARD_REQUEST_HEADERS)
# Response headers passed back; hop-by-hop ones and content-length are the server's business.
PASS_RESPONSE_HEADERS = frozenset({"content-type", "retry-after", "x-request-id", "request-id"})
BAD_GATEWAY = b'{"error":{"message":"upstream request failed","type":"bad_gateway"}}'
ENV_PREFIX = "BARE_"  # options for the granian worker: BARE_CLIENT, BARE_UPSTREAM, ...


def _is_sse(content_type: str) -> bool:
    return content_type.startswith("text/event-stream")


def _response_headers(items: Iterable[tuple[str, str]]) -> Headers:
    return [(k.lower(), v) for k, v in items if k.lower() in PASS_RESPONSE_HEADERS]


# --------------------------------------------------------------------------- response sinks


class Sink(Protocol):
    """Where a forwarder writes its answer: the server interface's side of one request."""

    started: bool

    async def whole(self, status: int, headers: Headers, body: bytes) -> None: ...

    async def start(self, status: int, headers: Headers) -> None: ...

    async def chunk(self, data: bytes) -> None: ...

    async def end(self) -> None: ...


class AsgiSink:
    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    def _start_message(self, status: int, headers: Headers) -> Message:
        self.started = True
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return {"type": "http.response.start", "status": status, "headers": raw}

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        headers.append(("content-length", str(len(body))))
        await self.send(self._start_message(status, headers))
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def start(self, status: int, headers: Headers) -> None:
        await self.send(self._start_message(status, headers))

    async def chunk(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


class RsgiSink:
    """granian RSGI: ``response_bytes`` for a whole answer (granian sets content-length),
    ``response_stream`` + ``send_bytes`` for a chunked one."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.transport: Any = None
        self.started = False

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        self.started = True
        self.protocol.response_bytes(status, headers, body)

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        self.transport = self.protocol.response_stream(status, headers)

    async def chunk(self, data: bytes) -> None:
        await self.transport.send_bytes(data)

    async def end(self) -> None:
        """Nothing to send: granian ends the chunked body when the handler returns."""


# --------------------------------------------------------------------------- HTTP clients


class Forwarder(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def forward(self, url: str, headers: Headers, body: bytes, sink: Sink) -> None: ...


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

    async def forward(self, url: str, headers: Headers, body: bytes, sink: Sink) -> None:
        async with self.session.post(url, data=body, headers=headers) as resp:
            out = _response_headers(resp.headers.items())
            if not _is_sse(resp.headers.get("content-type", "")):
                await sink.whole(resp.status, out, await resp.read())
                return
            await sink.start(resp.status, out)
            async for chunk in resp.content.iter_any():
                await sink.chunk(chunk)
            await sink.end()


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

    async def forward(self, url: str, headers: Headers, body: bytes, sink: Sink) -> None:
        request = self.client.build_request("POST", url, content=body, headers=headers)
        resp = await self.client.send(request, stream=True)
        try:
            out = _response_headers(resp.headers.items())
            if not _is_sse(resp.headers.get("content-type", "")):
                await sink.whole(resp.status_code, out, await resp.aread())
                return
            await sink.start(resp.status_code, out)
            async for chunk in resp.aiter_raw():
                await sink.chunk(chunk)
            await sink.end()
        finally:
            await resp.aclose()


class PyreqwestForwarder:
    """pyreqwest: Rust reqwest/hyper behind a Python API (its own Tokio runtime thread)."""

    def __init__(self, pool: int, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout
        self.client: Any = None

    async def start(self) -> None:
        from pyreqwest.client import ClientBuilder

        self.client = (
            ClientBuilder()
            .max_connections(self.pool)
            .pool_idle_timeout(timedelta(seconds=120))
            .timeout(timedelta(seconds=self.timeout))
            .no_proxy()
            .follow_redirects(False)
            # pass bodies through as they come (like aiohttp's auto_decompress=False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .build()
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def forward(self, url: str, headers: Headers, body: bytes, sink: Sink) -> None:
        # streamed_read_buffer_limit(0) is essential: by default pyreqwest reads up to 64 KiB of
        # the body ahead before ``__aenter__`` returns, which silently buffers a whole SSE
        # stream here and fakes streaming throughput.  With 0 only the headers are awaited.
        request = (
            self.client.post(url)
            .headers(headers)
            .body_bytes(body)
            .streamed_read_buffer_limit(0)
            .build_streamed()
        )
        async with request as resp:
            out = _response_headers(resp.headers.items())
            reader = resp.body_reader
            if not _is_sse(resp.headers.get("content-type", "")):
                await sink.whole(resp.status, out, bytes(await reader.bytes()))
                return
            await sink.start(resp.status, out)
            while (chunk := await reader.read_chunk()) is not None:
                await sink.chunk(bytes(chunk))
            await sink.end()


def make_forwarder(client: str, pool: int, timeout: float) -> Forwarder:
    if client == "aiohttp":
        return AiohttpForwarder(pool, timeout)
    if client == "pyreqwest":
        return PyreqwestForwarder(pool, timeout)
    return HttpxForwarder(client, pool, timeout)


# --------------------------------------------------------------------------- the apps


class Bare:
    """The forwarding logic, shared by the ASGI and the RSGI entry point."""

    def __init__(self, upstream: str, forwarder: Forwarder) -> None:
        self.upstream = upstream.rstrip("/")
        self.forwarder = forwarder

    async def handle(self, path: str, headers: Headers, body: bytes, sink: Sink) -> None:
        if path == "/health":
            await sink.whole(200, [("content-type", "text/plain")], b"ok")
            return
        try:
            await self.forwarder.forward(self.upstream + path, headers, body, sink)
        except Exception:
            if sink.started:
                raise
            await sink.whole(502, [("content-type", "application/json")], BAD_GATEWAY)


class AsgiApp:
    """Raw ASGI 3 application (uvicorn)."""

    def __init__(self, bare: Bare) -> None:
        self.bare = bare

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.bare.forwarder.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.bare.forwarder.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k in FORWARD_REQUEST_HEADERS_B
        ]
        await self.bare.handle(scope["path"], headers, b"".join(chunks), AsgiSink(send))


class RsgiApp:
    """Raw RSGI application (granian); the client lives from worker start to worker stop."""

    def __init__(self, bare: Bare) -> None:
        self.bare = bare

    def __rsgi_init__(self, loop: Any) -> None:
        # called in the worker process before its loop runs
        loop.run_until_complete(self.bare.forwarder.start())

    def __rsgi_del__(self, loop: Any) -> None:
        # called after the loop stopped serving
        loop.run_until_complete(self.bare.forwarder.close())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        headers = [(k, v) for k, v in scope.headers.items() if k in FORWARD_REQUEST_HEADERS]
        await self.bare.handle(scope.path, headers, await protocol(), RsgiSink(protocol))


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class Options:
    client: str
    upstream: str
    pool: int
    timeout: float

    def bare(self) -> Bare:
        return Bare(self.upstream, make_forwarder(self.client, self.pool, self.timeout))

    def to_env(self) -> dict[str, str]:
        return {ENV_PREFIX + k.upper(): str(v) for k, v in self.__dict__.items()}


def options_from_env() -> Options:
    env = os.environ
    return Options(
        client=env.get(ENV_PREFIX + "CLIENT", "aiohttp"),
        upstream=env.get(ENV_PREFIX + "UPSTREAM", "http://127.0.0.1:18081"),
        pool=int(env.get(ENV_PREFIX + "POOL", "512")),
        timeout=float(env.get(ENV_PREFIX + "TIMEOUT", "30")),
    )


def rsgi_app() -> RsgiApp:
    """granian factory target (``--factory bench/bare_forwarder.py:rsgi_app``), options from
    BARE_CLIENT, BARE_UPSTREAM, BARE_POOL, BARE_TIMEOUT."""
    return RsgiApp(options_from_env().bare())


def serve_uvicorn(opts: Options, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        AsgiApp(opts.bare()),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        interface="asgi3",
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


def serve_granian(opts: Options, host: str, port: int) -> None:
    """A granian server process (signals, socket) with one worker process running the app.

    The worker is a child process (multiprocessing): it gets the options through the
    environment and imports this file as its target.  SIGTERM or SIGINT to this process stops
    the worker and then this process.
    """
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels

    os.environ.update(opts.to_env())
    Granian(
        f"{Path(__file__).resolve()}:rsgi_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        workers=1,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=4096,
        log_level=LogLevels.warning,
        log_access=False,
    ).serve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=CLIENTS, default="aiohttp")
    parser.add_argument("--server", choices=SERVERS, default="uvicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18083)
    parser.add_argument("--upstream", default="http://127.0.0.1:18081", help="scheme://host:port")
    parser.add_argument("--pool", type=int, default=512, help="max upstream connections")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    opts = Options(args.client, args.upstream, args.pool, args.timeout)
    serve = serve_granian if args.server == "granian" else serve_uvicorn
    serve(opts, args.host, args.port)


if __name__ == "__main__":
    main()
