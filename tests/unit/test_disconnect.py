"""unless_client_leaves: work is cancelled when (and only when) the client disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from llm_api_router.disconnect import (
    CONNECTION_LOST_EXTENSION,
    ClientGone,
    ClientWatch,
    connection_lost_hook,
    unless_client_leaves,
)


class Client:
    """An ASGI receive() whose disconnect we trigger by hand."""

    def __init__(self) -> None:
        self.left = asyncio.Event()

    async def receive(self) -> dict[str, object]:
        await self.left.wait()
        return {"type": "http.disconnect"}


async def test_result_when_client_stays() -> None:
    client = Client()

    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert await unless_client_leaves(client.receive, work()) == "done"


async def test_work_is_cancelled_when_client_leaves() -> None:
    client = Client()
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    asyncio.get_running_loop().call_later(0.02, client.left.set)
    with pytest.raises(ClientGone):
        await unless_client_leaves(client.receive, work())
    assert cancelled.is_set()
    # The task is not left in a cancelling state: later awaits work normally.
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    await asyncio.sleep(0)


async def test_errors_from_work_propagate() -> None:
    client = Client()

    async def work() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await unless_client_leaves(client.receive, work())


async def test_outside_cancellation_is_not_swallowed() -> None:
    client = Client()

    async def outer() -> None:
        await unless_client_leaves(client.receive, asyncio.sleep(60))

    task = asyncio.create_task(outer())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class CountingClient(Client):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.abandoned = False

    async def receive(self) -> dict[str, object]:
        self.calls += 1
        try:
            return await super().receive()
        except asyncio.CancelledError:
            self.abandoned = True
            raise


async def test_one_watch_guards_several_steps_with_one_receive() -> None:
    client = CountingClient()
    watch = ClientWatch(client.receive)
    try:
        assert await watch.guard(asyncio.sleep(0.01, "dispatched")) == "dispatched"
        assert await watch.guard(asyncio.sleep(0.01, "streamed")) == "streamed"
    finally:
        watch.close()
    assert client.calls == 1  # one watcher for the whole request


async def test_a_disconnect_during_a_later_step_cancels_it() -> None:
    client = Client()
    watch = ClientWatch(client.receive)
    await watch.guard(asyncio.sleep(0))
    asyncio.get_running_loop().call_later(0.02, client.left.set)
    with pytest.raises(ClientGone):
        await watch.guard(asyncio.sleep(60))
    watch.close()


async def test_a_disconnect_between_steps_stops_the_next_one_before_it_starts() -> None:
    client = Client()
    watch = ClientWatch(client.receive)
    await watch.guard(asyncio.sleep(0))
    client.left.set()
    await asyncio.sleep(0.01)  # the watcher sees it while nothing is guarded
    started = False

    async def work() -> None:
        nonlocal started
        started = True

    with pytest.raises(ClientGone):
        await watch.guard(work())
    assert not started
    watch.close()


async def test_close_stops_the_watcher() -> None:
    client = CountingClient()
    watch = ClientWatch(client.receive)
    await watch.guard(asyncio.sleep(0))
    await asyncio.sleep(0)
    assert client.calls == 1 and not client.abandoned
    watch.close()
    watch.close()  # idempotent
    await asyncio.sleep(0)
    assert client.abandoned


class Server:
    """A server's connection-lost hook (what the router's edge puts in the scope)."""

    def __init__(self) -> None:
        self.callbacks: set[Callable[[], None]] = set()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self.callbacks.add(callback)
        return lambda: self.callbacks.discard(callback)

    def lose_connection(self) -> None:
        for callback in list(self.callbacks):
            callback()


async def test_with_the_servers_hook_a_lost_connection_cancels_the_work_without_a_task() -> None:
    server, client = Server(), CountingClient()
    scope = {"extensions": {CONNECTION_LOST_EXTENSION: {"subscribe": server.subscribe}}}
    watch = ClientWatch(client.receive, connection_lost_hook(scope))
    tasks_before = len(asyncio.all_tasks())
    assert await watch.guard(asyncio.sleep(0.01, "dispatched")) == "dispatched"
    assert len(server.callbacks) == 1 and client.calls == 0
    asyncio.get_running_loop().call_later(0.02, server.lose_connection)
    with pytest.raises(ClientGone):
        await watch.guard(asyncio.sleep(60))
    assert len(asyncio.all_tasks()) == tasks_before  # no watcher task was started
    watch.close()
    assert not server.callbacks  # unsubscribed
    assert client.calls == 0  # receive() was never needed


async def test_without_the_hook_the_scope_falls_back_to_the_watcher_task() -> None:
    assert connection_lost_hook({}) is None
    assert connection_lost_hook({"extensions": {"http.response.trailers": {}}}) is None
