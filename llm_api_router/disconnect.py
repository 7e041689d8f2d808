"""Stop work the moment the ASGI client goes away (so upstream requests are closed at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from starlette.types import Receive, Scope

__all__ = [
    "CONNECTION_LOST_EXTENSION",
    "ClientGone",
    "ClientWatch",
    "Subscribe",
    "connection_lost_hook",
    "unless_client_leaves",
]

_T = TypeVar("_T")

#: The scope extension of a server that calls back when the client's connection is lost
#: (the router's own edge does): ``{"subscribe": subscribe}``, where ``subscribe(callback)``
#: returns ``unsubscribe()``.  With it, watching a request costs a callback, not a task.
CONNECTION_LOST_EXTENSION = "llm_router.connection_lost"

Subscribe = Callable[[Callable[[], None]], Callable[[], None]]


def connection_lost_hook(scope: Scope) -> Subscribe | None:
    """The server's connection-lost subscription for this request, if it offers one."""
    extensions = scope.get("extensions")
    hook = extensions.get(CONNECTION_LOST_EXTENSION) if extensions else None
    return None if hook is None else hook.get("subscribe")


class ClientGone(Exception):
    """The client disconnected; whatever was being done for it was cancelled."""


class ClientWatch:
    """Watches one request's client for a disconnect, for the whole request.

    With the server's connection-lost hook (``subscribe``, see
    :data:`CONNECTION_LOST_EXTENSION`) it is a callback.  Otherwise it is one watcher task:
    once the request body has been read, the ASGI ``receive`` only returns when the client
    disconnects (or the response is complete).  :meth:`guard` may be called any number of
    times (dispatch, then the stream); the watch starts with the first call.  :meth:`close`
    ends it.
    """

    __slots__ = ("_gone", "_guarded", "_receive", "_subscribe", "_unsubscribe", "_watcher")

    def __init__(self, receive: Receive, subscribe: Subscribe | None = None) -> None:
        self._receive = receive
        self._subscribe = subscribe
        self._unsubscribe: Callable[[], None] | None = None
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
        if self._watcher is None and self._unsubscribe is None:
            if self._subscribe is not None:
                self._unsubscribe = self._subscribe(self._client_left)
            else:
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
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def _watch(self) -> None:
        receive = self._receive
        while (await receive())["type"] != "http.disconnect":
            pass
        self._client_left()

    def _client_left(self) -> None:
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
