"""One access-log line for every request that is not a chat request.

Chat requests are reported by their endpoint (family, model, provider, attempts).  Every
other request (``/``, ``/docs``, an unknown route, a wrong method, …) passes through
:class:`AccessLogMiddleware`, a pure ASGI middleware that logs method, path, status and
latency once the response is over, so a client that "does nothing" still leaves a trace.
Probes (``/health``, ``/metrics``) are logged at debug level, everything else at info.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_api_router.logs import ACCESS_LOGGER

__all__ = ["PROBE_PATHS", "AccessLogMiddleware"]

#: Paths polled by load balancers and scrapers: logged at debug level.
PROBE_PATHS: frozenset[str] = frozenset({"/health", "/metrics"})

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

access_log = logging.getLogger(ACCESS_LOGGER)


class AccessLogMiddleware:
    """Logs ``METHOD PATH -> STATUS`` with the latency; a request that raised counts as 500."""

    def __init__(self, app: ASGIApp, probe_paths: Collection[str] = PROBE_PATHS) -> None:
        self.app = app
        self.probe_paths = frozenset(probe_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        level = logging.DEBUG if path in self.probe_paths else logging.INFO
        if not access_log.isEnabledFor(level):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception is answered 500 further out

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method: str = scope["method"]
            access_log.log(
                level,
                "%s %s -> %s",
                method,
                path,
                status,
                extra={
                    "request_id": _request_id(scope),
                    "method": method,
                    "path": path,
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            supplied = bytes(value).decode("latin-1")
            if _CLIENT_REQUEST_ID.match(supplied):
                return supplied
            break
    return os.urandom(12).hex()
