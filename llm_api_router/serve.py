"""Serving the app: the uvicorn server, the limits of the HTTP edge, and the process signals.

The HTTP edge (:class:`EdgeProtocol`, uvicorn's httptools protocol with limits) answers
before any quadratic work or any application code runs:

- a request line over ``max_url_bytes``: **414**; a header section over ``max_header_bytes``
  or with more than :data:`MAX_HEADER_COUNT` lines: **431**; a header section not complete
  within ``header_timeout``: **408**; a body that sends nothing for ``body_timeout``: **408**;
  an ``Upgrade`` (e.g. websocket): **426**; an unparsable request: **400**.  Each is a JSON
  body, the family's native error under ``/openai`` and ``/anthropic``, then the connection
  is closed.
- a connection that sends nothing is closed after ``header_timeout``, an idle keep-alive
  connection after ``keepalive_timeout``; beyond ``max_connections`` a new connection gets
  an immediate 503 and is closed.

:class:`RouterServer` (one process) adds the signals:

- SIGTERM or SIGINT: stop accepting, let running requests finish for ``shutdown_timeout``
  seconds, then end every open stream with the family's native error event and exit.
  A second signal ends the streams at once.
- SIGHUP (and, with ``watch_config``, a change of the config file's mtime): reload the config
  file; an invalid one is logged and the running config kept.

With several workers uvicorn's own supervisor runs the workers: the edge limits apply, the
drain deadline is uvicorn's ``timeout_graceful_shutdown`` and SIGHUP restarts the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import ChangeReload, Multiprocess

from llm_api_router.config import FAMILIES, RouterConfig, Settings
from llm_api_router.disconnect import CONNECTION_LOST_EXTENSION
from llm_api_router.errors import ConfigError
from llm_api_router.families import family_for
from llm_api_router.server import RouterApp

__all__ = [
    "CONFIG_POLL_SECONDS",
    "MAX_HEADER_COUNT",
    "EdgeLimits",
    "EdgeProtocol",
    "RouterServer",
    "ServeConfig",
    "serve",
    "settle_heap",
]

logger = logging.getLogger("llm_api_router.serve")

#: Header lines a request may have (Apache's LimitRequestFields).
MAX_HEADER_COUNT = 128
#: After rejecting a request, how long its remaining bytes are read and dropped before the
#: connection closes, so the client reads the answer instead of a reset.
LINGER_SECONDS = 2.0
#: How often ``watch_config`` looks at the config file's mtime.
CONFIG_POLL_SECONDS = 1.0
#: After the streams were ended, how long their last bytes may take before the requests
#: still running (non-streamed ones waiting for an upstream) are cancelled: answered 503.
STREAM_END_GRACE = 1.0

#: The cyclic collector's first threshold in a server process (CPython's default is 700).
#: It counts tracked objects allocated and not yet freed; a router with a few dozen
#: requests in flight holds more than 700 short-lived ones at any moment, so the default
#: ran a collection every few requests that found nothing (about 30 µs per request).
GC_THRESHOLD = 10_000

SHUTDOWN_MESSAGE = (
    "The router is shutting down; the stream was ended before its natural end. Retry the "
    "request."
)


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What a client may send, and how slowly (from :class:`~llm_api_router.config.Settings`)."""

    max_url_bytes: int
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(
            settings.max_url_bytes,
            settings.max_header_bytes,
            settings.header_timeout,
            settings.body_timeout,
            settings.max_connections,
        )


class ServeConfig(uvicorn.Config):
    """uvicorn's config, carrying the router's edge limits to :class:`EdgeProtocol`."""

    def __init__(self, app: Any, *, settings: Settings, **kwargs: Any) -> None:
        kwargs.setdefault("http", EdgeProtocol)
        kwargs.setdefault("ws", "none")  # an Upgrade is answered 426 by the edge
        kwargs.setdefault("timeout_keep_alive", settings.keepalive_timeout)
        # RouterServer ends the drain itself; this outer bound serves uvicorn's own workers.
        kwargs.setdefault(
            "timeout_graceful_shutdown", math.ceil(settings.shutdown_timeout + STREAM_END_GRACE) + 1
        )
        kwargs.setdefault("server_header", False)
        super().__init__(app, **kwargs)
        self.edge = EdgeLimits.from_settings(settings)
        self.shutdown_timeout = settings.shutdown_timeout


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing a request the edge has answered."""


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with size limits, read timeouts and a connection limit."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        edge = getattr(config, "edge", None)
        self._limits: EdgeLimits = edge or EdgeLimits.from_settings(Settings())
        self._rejected = False
        self._in_head = True
        self._head_bytes = 0
        self._url_bytes = 0
        self._header_count = 0
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False
        self._on_lost: set[Callable[[], None]] = set()

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._limits.max_connections:
            self.transport = transport
            logger.warning(
                "connection refused: %d connections open (max_connections)",
                len(self.connections),
            )
            self._reject(503, "The router has too many open connections; retry shortly.", b"")
            return
        super().connection_made(transport)
        self._arm(self._limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._lost = True
        super().connection_lost(exc)
        callbacks, self._on_lost = self._on_lost, set()
        for callback in callbacks:
            callback()

    def _subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """The connection-lost hook a request's scope carries: ``callback`` runs when the
        client's connection is lost (soon, if it already is); the result unsubscribes."""
        if self._lost:
            self.loop.call_soon(callback)
            return _nothing
        self._on_lost.add(callback)
        return lambda: self._on_lost.discard(callback)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # lingering: the answer is sent, the rest is dropped
        self._last_read = self.loop.time()
        if not self._in_head:
            self._feed(data)
            return
        if self._timer is None:  # the first bytes of a request on a kept-alive connection
            self._arm(self._limits.header_timeout, self._header_timed_out)
        # Feed at most the head's allowance, so no oversized head is ever parsed.
        room = self._limits.max_header_bytes - self._head_bytes
        if len(data) > room:
            head, data = data[:room], data[room:]
            self._head_bytes += len(head)
            self._feed(head)
            if self._rejected or self.transport.is_closing():
                return
            if self._in_head:
                self._reject_head()
                return
        else:
            self._head_bytes += len(data)
        self._feed(data)
        if self._in_head and not self._rejected and self._over_limit():
            self._reject_head()

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, except that our own rejections are not parser errors."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if not self._rejected:
                self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:  # pragma: no cover - answered in on_headers_complete
            pass

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {CONNECTION_LOST_EXTENSION: {"subscribe": self._subscribe}}

    def on_url(self, url: bytes) -> None:
        room = self._limits.max_url_bytes - self._url_bytes
        self._url_bytes += len(url)
        if room > 0:  # past the limit, keep only what names the path (for the error's family)
            super().on_url(url[:room])

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count <= MAX_HEADER_COUNT:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_timer()
        if self._over_limit():
            self._reject_head()
            raise _Rejected
        if self.parser.should_upgrade():
            self._reject(
                426,
                "Upgrade Required: this router speaks HTTP/1.1 request and response (and "
                "server-sent events for streams); it does not switch protocols.",
                self.url,
            )
            raise _Rejected
        super().on_headers_complete()
        self._arm(self._limits.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_timer()
        self._in_head = True
        self._head_bytes = self._url_bytes = self._header_count = 0

    def send_400_response(self, msg: str) -> None:
        if self._rejected:
            return
        self._reject(
            400, "Invalid HTTP request: it could not be parsed.", getattr(self, "url", b"")
        )

    # -- limits ---------------------------------------------------------------------------

    def _over_limit(self) -> bool:
        # The head's size is enforced by data_received, which never feeds more of it.
        return self._url_bytes > self._limits.max_url_bytes or self._header_count > MAX_HEADER_COUNT

    def _reject_head(self) -> None:
        url = getattr(self, "url", b"")
        if self._url_bytes > self._limits.max_url_bytes:
            self._reject(
                414,
                f"The request URL is longer than the limit of {self._limits.max_url_bytes} "
                "bytes.",
                url,
            )
        elif self._header_count > MAX_HEADER_COUNT:
            self._reject(431, f"The request has more than {MAX_HEADER_COUNT} header lines.", url)
        else:
            self._reject(
                431,
                "The request line and headers are larger than the limit of "
                f"{self._limits.max_header_bytes} bytes.",
                url,
            )

    def _header_timed_out(self) -> None:
        self._timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request waits for the response before it: its clock starts later.
            self._arm(self._limits.header_timeout, self._header_timed_out)
            return
        if self._head_bytes == 0:
            self.transport.close()  # a connection that never sent a byte
            return
        self._reject(
            408,
            f"The request headers did not arrive within {self._limits.header_timeout:g} s.",
            getattr(self, "url", b""),
        )

    def _body_timed_out(self) -> None:
        self._timer = None
        left = self._last_read + self._limits.body_timeout - self.loop.time()
        if left > 0:
            self._arm(left, self._body_timed_out)
            return
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        # The app is waiting for the body: it now sees a disconnect, the client a 408.
        cycle.disconnected = True
        cycle.message_event.set()
        self._reject(
            408,
            f"The request body sent nothing for {self._limits.body_timeout:g} s.",
            self.scope.get("raw_path", b""),
        )

    def _reject(self, status: int, message: str, url: bytes) -> None:
        """Answer ``status`` now, drop the rest of the request, close the connection."""
        self._rejected = True
        self._cancel_timer()
        logger.info("edge: answered %d and closed the connection (%s)", status, message)
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            cycle.keep_alive = False  # a pipelined request: close after the running response
            return
        transport.write(_error_response(status, message, url))
        if transport.can_write_eof():
            transport.write_eof()
        self._arm(LINGER_SECONDS, transport.close)

    # -- timers -----------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _nothing() -> None:
    pass


def _error_response(status: int, message: str, url: bytes) -> bytes:
    """A complete HTTP/1.1 error response: the family's error body where the path names one."""
    path = url.split(b"?", 1)[0].lstrip(b"/")
    first = path.split(b"/", 1)[0].decode("latin-1")
    family = next((name for name in FAMILIES if name == first), None)
    if family is not None:
        body = family_for(family).error_body(status, message)
    else:
        body = orjson.dumps({"detail": message})
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


# -- the server: drain with a deadline, reload on SIGHUP ---------------------------------------


class RouterServer(uvicorn.Server):
    """uvicorn's server for one process, with the router's shutdown and reload."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        config_path: str | None = None,
        load: Callable[[str], RouterConfig] = RouterConfig.from_file,
        watch_config: bool = False,
    ) -> None:
        super().__init__(config)
        self._shutdown_timeout = config.shutdown_timeout
        self._config_path = config_path
        self._load = load
        self._watch_config = watch_config
        self._config_mtime = _mtime(config_path)
        self._interrupted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[None]] = set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and self._loop is not None:
            # The second signal: end the streams now (thread-safe: this is a signal handler).
            self._loop.call_soon_threadsafe(self._interrupted.set)
        super().handle_exit(sig, frame)
        self.force_exit = False  # still end the streams and shut the app down properly

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        loop = self._loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload_config)  # main thread only
        if self._watch_config and self._config_path is not None:
            task = loop.create_task(self._poll_config())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def reload_config(self) -> bool:
        """Load the config file again and serve it; on any problem keep the running one."""
        path = self._config_path
        app = self.router_app
        if path is None or app is None:
            logger.warning("reload: the config came from the environment; nothing to reload")
            return False
        self._config_mtime = _mtime(path)
        try:
            config = self._load(path)
            app.reload(config)
        except ConfigError as exc:
            logger.error("config reload rejected, keeping the running config: %s", exc)
            return False
        except Exception as exc:  # a reload must never take the router down
            logger.error(
                "config reload failed (%s), keeping the running config", type(exc).__name__
            )
            return False
        logger.info("config reloaded from %s", path)
        return True

    async def _poll_config(self) -> None:
        while not self.should_exit:
            await asyncio.sleep(CONFIG_POLL_SECONDS)
            mtime = _mtime(self._config_path)
            if mtime is not None and mtime != self._config_mtime:
                self.reload_config()

    @property
    def router_app(self) -> RouterApp | None:
        """The RouterApp under uvicorn's middleware (None before the app is loaded)."""
        app: Any = getattr(self.config, "loaded_app", None)
        for _ in range(8):
            if isinstance(app, RouterApp) or app is None:
                return app
            app = getattr(app, "app", None)
        return None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for task in self._background:
            task.cancel()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await super().shutdown(sockets)

    async def _wait_tasks_to_complete(self) -> None:
        """Drain until the deadline or a second signal; then end the streams natively."""
        tasks = self.server_state.tasks
        if tasks:
            logger.info(
                "draining %d request(s) for up to %g s (signal again to end streams now)",
                len(tasks),
                self._shutdown_timeout,
            )
        await self._drain(self._shutdown_timeout, interruptible=True)
        app = self.router_app
        if tasks and app is not None:
            ended = app.interrupt_streams(SHUTDOWN_MESSAGE)
            if ended:
                logger.warning("shutdown: ended %d open stream(s) with an error event", ended)
            await self._drain(STREAM_END_GRACE, interruptible=False)
        for task in list(tasks):
            task.cancel(msg="the router is shutting down")

    async def _drain(self, seconds: float, *, interruptible: bool) -> None:
        """Wait until no request is running, ``seconds`` pass or (``interruptible``) a
        second signal comes."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        interrupted = loop.create_task(self._interrupted.wait())
        try:
            while not (interruptible and interrupted.done()):
                pending = {task for task in self.server_state.tasks if not task.done()}
                left = end - loop.time()
                if not pending or left <= 0:
                    return
                await asyncio.wait(
                    pending | {interrupted}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            interrupted.cancel()


def _mtime(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


# -- entry point ----------------------------------------------------------------------------


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a server process, once the app is built.

    Everything alive now (modules, the app, its config) lives as long as the process:
    :func:`gc.freeze` keeps it out of every later collection, which otherwise walked all of
    it in each full collection (about 60 ms, a pause every second or so under load).
    Short-lived objects are still collected, less often (:data:`GC_THRESHOLD`).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, middle, old)


def serve(
    app: RouterApp | str,
    settings: Settings,
    *,
    config_path: str | None = None,
    watch_config: bool = False,
    workers: int = 1,
    reload: bool = False,
    **uvicorn_options: Any,
) -> bool:
    """Run the router until it is stopped; False if it could not start.

    ``app`` is the app (one process) or an import string of an app factory (``workers``
    > 1 or ``reload``, which uvicorn's supervisors run).  ``config_path`` is re-read on
    SIGHUP (and polled with ``watch_config``) in the one-process case.
    """
    config = ServeConfig(
        app,
        settings=settings,
        factory=isinstance(app, str),
        reload=reload,
        workers=None if reload else workers,
        **uvicorn_options,
    )
    server = RouterServer(config, config_path=config_path, watch_config=watch_config)
    with contextlib.suppress(KeyboardInterrupt):
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
            return True
        if config.workers > 1:
            # uvicorn's supervisor: each worker is a plain uvicorn server with our edge.
            Multiprocess(config, sockets=[config.bind_socket()]).run()
            return True
        settle_heap()
        server.run()
    return server.started
