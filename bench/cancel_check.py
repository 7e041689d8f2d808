"""Does cancelling a request close its upstream connection?  (aiohttp vs pyreqwest)

A router must stop an upstream request the moment its client leaves or a timeout fires:
an LLM keeps generating, and billing, until its connection closes.  This starts a TCP
server on 127.0.0.1 that reads a request and never answers, sends one POST with each
client, cancels the waiting task after 0.3 s, and reports whether the server saw the
connection close within 2 s.

    .venv/bin/python bench/cancel_check.py

Output: one line per client, ``closed`` or ``LEFT OPEN``; exit status 0 either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import Awaitable, Callable

Sender = Callable[[str], Awaitable[object]]


async def _server() -> tuple[asyncio.Server, asyncio.Queue[str], list[asyncio.StreamWriter]]:
    events: asyncio.Queue[str] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")  # the request head; then say nothing
        await reader.read()  # returns b"" when the client closes the connection
        events.put_nowait("closed")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, events, writers


async def _check(name: str, send: Sender, url: str, events: asyncio.Queue[str]) -> str:
    task = asyncio.ensure_future(send(url))
    await asyncio.sleep(0.3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        await asyncio.wait_for(events.get(), 2.0)
    except TimeoutError:
        return f"{name}: LEFT OPEN (the upstream keeps working for a client that is gone)"
    return f"{name}: closed"


async def main() -> None:
    server, events, writers = await _server()
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = b'{"model":"m","messages":[]}'
    results = []

    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def aiohttp_send(target: str) -> object:
            async with session.post(target, data=body) as response:
                return await response.read()

        results.append(await _check("aiohttp", aiohttp_send, url, events))

    if importlib.util.find_spec("pyreqwest") is None:
        results.append("pyreqwest: not installed")
    else:
        from pyreqwest.client import ClientBuilder

        client = ClientBuilder().build()

        async def pyreqwest_send(target: str) -> object:
            response = await client.post(target).body_bytes(body).build().send()
            return await response.bytes()

        async def pyreqwest_stream(target: str) -> object:
            request = client.post(target).body_bytes(body).streamed_read_buffer_limit(0)
            async with request.build_streamed() as response:
                return response.status

        results.append(await _check("pyreqwest send()", pyreqwest_send, url, events))
        results.append(await _check("pyreqwest streamed", pyreqwest_stream, url, events))
        await client.close()
    for writer in writers:  # the connections left open: their handlers then end normally
        writer.transport.abort()
    await asyncio.sleep(0.1)
    server.close()
    print("\n".join(results))


if __name__ == "__main__":
    asyncio.run(main())
