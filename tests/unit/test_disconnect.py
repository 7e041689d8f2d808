"""unless_client_leaves: work is cancelled when (and only when) the client disconnects."""

from __future__ import annotations

import asyncio

import pytest

from llm_api_router.disconnect import ClientGone, ClientWatch, unless_client_leaves


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
