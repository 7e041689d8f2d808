"""The fake upstream on its own event loop in a daemon thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from .accounts import OwnedObject
from .behaviours import Behaviour
from .recording import Family, RecordedRequest
from .server import FakeUpstream

__all__ = ["FakeUpstreamThread"]


class FakeUpstreamThread:
    """A :class:`FakeUpstream` running on its own event loop in a daemon thread.

    For synchronous tests; every method is thread-safe. Use as a context manager or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, stream_interval: float = 0.0
    ) -> None:
        self._host = host
        self._requested_port = port
        self.upstream = FakeUpstream(stream_interval=stream_interval)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def start(self) -> Self:
        """Start the server thread; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstreamThread is already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("fake upstream did not start within 30 s")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            await self.upstream.start(self._host, self._requested_port)
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self.upstream.stop()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self.upstream.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.upstream.url

    def base_url(self, provider: str, family: Family) -> str:
        """The SDK ``base_url`` of ``provider`` for ``family``."""
        return self.upstream.base_url(provider, family)

    def script(self, provider: str, *behaviours: Behaviour, operation: str | None = None) -> None:
        """Append behaviours to ``provider``'s queue (of one ``operation`` only, if given)."""
        self.upstream.script(provider, *behaviours, operation=operation)

    def set_default(
        self, provider: str, behaviour: Behaviour, *, operation: str | None = None
    ) -> None:
        """Set ``provider``'s behaviour for when its queues are empty."""
        self.upstream.set_default(provider, behaviour, operation=operation)

    def set_account(self, provider: str, account: str) -> None:
        """Put ``provider`` into ``account`` (see :meth:`FakeUpstream.set_account`)."""
        self.upstream.set_account(provider, account)

    def account_of(self, provider: str) -> str:
        """``provider``'s account."""
        return self.upstream.account_of(provider)

    def set_models(self, provider: str, models: Sequence[str]) -> None:
        """The model ids ``provider``'s ``models`` endpoints list."""
        self.upstream.set_models(provider, models)

    def objects(self, account: str | None = None) -> list[OwnedObject]:
        """Every owned object (id, kind, account), optionally of one account only."""
        return self.upstream.objects(account)

    def reset(self) -> None:
        """Forget queues, defaults, recorded requests, accounts, models and objects."""
        self.upstream.reset()

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, oldest first."""
        return self.upstream.requests(provider)

    def wait_for_disconnect(self, provider: str, timeout: float = 2.0) -> RecordedRequest | None:
        """Block until a request of ``provider`` has seen its client go away; return the latest
        such request, or ``None`` after ``timeout`` seconds."""
        return self.upstream.wait_for_disconnect_blocking(provider, timeout)
