"""AiohttpTransport against a real local server: stall timer, finish limit, keep-alive reuse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from llm_api_router.errors import UpstreamTimeout
from llm_api_router.upstream import (
    END_GRACE,
    LOOP_BEHIND,
    AiohttpTransport,
    UpstreamResponse,
    _end_or_close,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Upstream:
    """A loopback aiohttp server that counts the TCP connections it accepted."""

    def __init__(self) -> None:
        self.connections: set[object] = set()
        self.url = ""

    def count(self, request: web.Request) -> None:
        self.connections.add(request.transport)


Fixture = tuple["Upstream", Callable[[Handler], None]]


@pytest.fixture
async def upstream() -> AsyncIterator[Fixture]:
    state = Upstream()
    handlers: dict[str, Handler] = {}

    async def dispatch(request: web.Request) -> web.StreamResponse:
        state.count(request)
        await request.read()
        return await handlers["h"](request)

    app = web.Application()
    app.router.add_post("/s", dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/s"

    def set_handler(handler: Handler) -> None:
        handlers["h"] = handler

    yield state, set_handler
    await runner.cleanup()


def paced(events: list[bytes], interval: float, end_delay: float = 0.0) -> Handler:
    """An SSE answer: ``events`` ``interval`` apart; the body ends ``end_delay`` after the last."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(interval)
            await response.write(event)
        if end_delay:
            await asyncio.sleep(end_delay)
        await response.write_eof()
        return response

    return handler


async def read_all(response: UpstreamResponse) -> bytes:
    parts = []
    while chunk := await response.next_chunk():
        parts.append(chunk)
    return b"".join(parts)


async def test_timeout_bounds_each_wait_not_the_whole_body(upstream: Fixture) -> None:
    state, set_handler = upstream
    set_handler(paced([b"data: %d\n\n" % i for i in range(6)], interval=0.1))
    async with AiohttpTransport() as transport:
        started = time.monotonic()
        response = await transport.request(state.url, {}, b"{}", timeout=0.3)
        body = await read_all(response)
        response.release()
    assert body.count(b"data:") == 6
    assert time.monotonic() - started > 0.45  # longer than `timeout`, and complete


async def test_a_stall_fails_the_wait_after_timeout(upstream: Fixture) -> None:
    state, set_handler = upstream
    set_handler(paced([b"data: 1\n\n", b"data: 2\n\n"], interval=1))
    async with AiohttpTransport() as transport:
        response = await transport.request(state.url, {}, b"{}", timeout=0.3)
        assert await response.next_chunk() == b"data: 1\n\n"
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await response.next_chunk()
        waited = time.monotonic() - started
        response.close()
    assert 0.25 < waited < 0.9


async def test_limit_wait_shortens_the_wait(upstream: Fixture) -> None:
    state, set_handler = upstream
    set_handler(paced([b"data: 1\n\n", b"data: 2\n\n"], interval=1))
    async with AiohttpTransport() as transport:
        response = await transport.request(state.url, {}, b"{}", timeout=30)
        await response.next_chunk()
        response.limit_wait(0.1)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await response.next_chunk()
        waited = time.monotonic() - started
        response.close()
    assert 0.05 < waited < 0.9


@pytest.mark.parametrize("end_delay", [0.0, 0.05])
async def test_release_keeps_the_connection(upstream: Fixture, end_delay: float) -> None:
    """The last event may come before the body's end: released, the connection is reused."""
    state, set_handler = upstream
    set_handler(paced([b"data: 1\n\n", b"data: [DONE]\n\n"], interval=0.01, end_delay=end_delay))
    async with AiohttpTransport() as transport:
        for _ in range(3):
            response = await transport.request(state.url, {}, b"{}", timeout=5)
            while b"[DONE]" not in await response.next_chunk():
                pass
            response.release()  # before the end of the body when end_delay > 0
            await asyncio.sleep(end_delay * 2)
    assert len(state.connections) == 1


async def test_close_drops_the_connection(upstream: Fixture) -> None:
    state, set_handler = upstream
    set_handler(paced([b"data: 1\n\n", b"data: 2\n\n"], interval=0.2))
    async with AiohttpTransport() as transport:
        for _ in range(2):
            response = await transport.request(state.url, {}, b"{}", timeout=5)
            await response.next_chunk()
            response.close()  # mid-body
    assert len(state.connections) == 2


async def test_release_mid_body_closes_if_the_end_never_comes(upstream: Fixture) -> None:
    state, set_handler = upstream
    set_handler(paced([b"data: 1\n\n", b"data: 2\n\n"], interval=0.2))
    async with AiohttpTransport() as transport:
        response = await transport.request(state.url, {}, b"{}", timeout=5)
        await response.next_chunk()
        response.release()  # the body goes on: not reusable
        second = await transport.request(state.url, {}, b"{}", timeout=5)
        assert await read_all(second) == b"data: 1\n\ndata: 2\n\n"
        second.release()
    assert len(state.connections) == 2


class _Loop:
    """time() and call_at() of an event loop, by hand."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.calls: list[tuple[float, tuple[object, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: object, *args: object) -> None:
        self.calls.append((when, args))


class _Response:
    def __init__(self, connected: bool = True) -> None:
        self.connection = object() if connected else None
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_body_end_late_on_an_idle_loop_closes_the_connection() -> None:
    loop, response = _Loop(now=101.0 + LOOP_BEHIND / 2), _Response()
    _end_or_close(loop, response, 101.0, 110.0)  # type: ignore[arg-type]
    assert response.closed and not loop.calls


def test_a_grace_timer_firing_late_renews_the_grace_up_to_the_limit() -> None:
    loop, response = _Loop(now=101.5), _Response()  # 0.5 s late: the loop is behind
    _end_or_close(loop, response, 101.0, 110.0)  # type: ignore[arg-type]
    assert not response.closed
    assert loop.calls == [(101.5 + END_GRACE, (loop, response, 101.5 + END_GRACE, 110.0))]
    loop.now, loop.calls = 110.2, []  # late again, but past the limit
    _end_or_close(loop, response, 109.8, 110.0)  # type: ignore[arg-type]
    assert response.closed and not loop.calls


def test_a_body_that_ended_leaves_its_pooled_connection_alone() -> None:
    loop, response = _Loop(now=101.0), _Response(connected=False)
    _end_or_close(loop, response, 101.0, 110.0)  # type: ignore[arg-type]
    assert not response.closed and not loop.calls
