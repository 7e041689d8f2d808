"""Stop work the moment the ASGI client goes away (so upstream requests are closed at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

__all__ = ["ClientGone", "unless_client_leaves"]

_T = TypeVar("_T")


class ClientGone(Exception):
    """The client disconnected; whatever was being done for it was cancelled."""


async def unless_client_leaves(receive: Receive, work: Awaitable[_T]) -> _T:
    """Await ``work`` in this task; cancel it and raise ClientGone if the client disconnects.

    Once the request body has been read, the ASGI ``receive`` only returns when the client
    disconnects, so one watcher task per request is all it costs.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()
