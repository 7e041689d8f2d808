"""Stop work the moment the ASGI client goes away (so upstream requests are closed at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from starlette.types import Receive

__all__ = ["ClientGone", "ClientWatch", "unless_client_leaves"]

_T = TypeVar("_T")


class ClientGone(Exception):
    """The client disconnected; whatever was being done for it was cancelled."""


class ClientWatch:
    """Watches one request's client for a disconnect, with one task for the whole request.

    Once the request body has been read, the ASGI ``receive`` only returns when the client
    disconnects (or the response is complete), so one watcher task per request is all it
    costs: :meth:`guard` may be called any number of times (dispatch, then the stream), and
    the task is started by the first call.  :meth:`close` ends the watch.
    """

    __slots__ = ("_gone", "_guarded", "_receive", "_watcher")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None
        self._guarded: asyncio.Task[Any] | None = None
        self._gone = False

    async def guard(self, work: Awaitable[_T]) -> _T:
        """Await ``work`` in this task; cancel it and raise ClientGone if the client leaves."""
        if self._gone:
            if isinstance(work, Coroutine):
                work.close()
            raise ClientGone
        task = asyncio.current_task()
        assert task is not None
        self._guarded = task
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        try:
            return await work
        except asyncio.CancelledError:
            if self._gone and task.uncancel() == 0:
                raise ClientGone from None
            raise
        finally:
            self._guarded = None

    def close(self) -> None:
        """Stop watching (idempotent)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def _watch(self) -> None:
        receive = self._receive
        while (await receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        if self._guarded is not None:
            self._guarded.cancel()


async def unless_client_leaves(receive: Receive, work: Awaitable[_T]) -> _T:
    """Await ``work`` in this task; cancel it and raise ClientGone if the client disconnects.

    A one-off :class:`ClientWatch`; a request that guards several steps shares one instead.
    """
    watch = ClientWatch(receive)
    try:
        return await watch.guard(work)
    finally:
        watch.close()
