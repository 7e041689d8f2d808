"""The chat endpoint of one family: HTTP request in, dispatch, HTTP response out.

It checks the router key, reads and validates the body, asks the dispatcher, renders the
answer (or our error, natively), and reports the request once: one access-log line and the
request metrics, after the last byte for streams.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from llm_api_router.auth import RouterKeys
from llm_api_router.dispatch import Dispatcher, Reply
from llm_api_router.errors import (
    AllProvidersFailed,
    AttemptRecord,
    ClientRequestError,
    NoProviderError,
    RouterError,
)
from llm_api_router.families import ApiFamily
from llm_api_router.headers import forward_request_headers
from llm_api_router.logs import ACCESS_LOGGER
from llm_api_router.metrics import RouterMetrics
from llm_api_router.streaming import SSEResponse

__all__ = ["REQUEST_ID_HEADER", "ChatEndpoint"]

#: The response header that carries the router's request id.
REQUEST_ID_HEADER = "x-router-request-id"

_JSON_TYPES = ("application/json", "text/json")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

access_log = logging.getLogger(ACCESS_LOGGER)


@dataclass(slots=True)
class _Exchange:
    """What the access log and metrics report about one client request."""

    request_id: str
    started: float
    model: str | None = None
    stream: bool = False
    provider: str | None = None
    status: int = 0
    attempts: list[AttemptRecord] = field(default_factory=list)
    upstream_request_id: str | None = None
    overhead: float | None = None


class ChatEndpoint:
    """``POST /<family>/...``: one instance per family, built by the app's lifespan."""

    def __init__(
        self,
        family: ApiFamily,
        dispatcher: Dispatcher,
        keys: RouterKeys,
        metrics: RouterMetrics,
        max_body: int,
    ) -> None:
        self._family = family
        self._dispatcher = dispatcher
        self._keys = keys
        self._metrics = metrics
        self._max_body = max_body
        self._name = family.name
        self._in_flight = metrics.in_flight.labels(family.name)
        self._overhead = metrics.overhead.labels(family.name)

    async def handle(self, request: Request) -> Response:
        exchange = _Exchange(_request_id(request), time.perf_counter())
        self._in_flight.inc()
        try:
            response = await self._answer(request, exchange)
        except BaseException:
            self._in_flight.dec()
            raise
        response.headers[REQUEST_ID_HEADER] = exchange.request_id
        if not isinstance(response, SSEResponse):
            self._finish(exchange, None, None)
        return response

    async def _answer(self, request: Request, exchange: _Exchange) -> Response:
        family = self._family
        try:
            if not self._keys.allows(request.headers):
                raise ClientRequestError(
                    401,
                    "Missing or invalid router key: send it as 'Authorization: Bearer <key>' "
                    "or 'x-api-key: <key>'.",
                    code="invalid_api_key",
                )
            body = await _read_body(request, self._max_body)
            chat = family.parse_request(body)
            exchange.model, exchange.stream = chat.model, chat.stream
            headers = forward_request_headers(request.headers.raw, family.private_request_headers)
            query = request.url.query
            reply = await self._dispatcher.dispatch(chat, headers, f"?{query}" if query else "")
        except RouterError as exc:
            return self._error(exchange, exc)
        upstream_time = sum(a.latency for a in reply.attempts)
        exchange.overhead = max(0.0, time.perf_counter() - exchange.started - upstream_time)
        exchange.provider, exchange.status, exchange.attempts = (
            reply.provider,
            reply.status,
            reply.attempts,
        )
        exchange.upstream_request_id = reply.headers.get("x-request-id") or reply.headers.get(
            "request-id"
        )
        headers = {
            **reply.headers,
            "x-router-provider": reply.provider,
            "x-router-attempts": str(len(reply.attempts)),
        }
        if isinstance(reply, Reply):
            return Response(reply.body, status_code=reply.status, headers=headers)
        headers["cache-control"] = "no-cache"
        headers["x-accel-buffering"] = "no"

        def done(first_byte: float | None, outcome: str) -> None:
            self._finish(exchange, first_byte, outcome)

        return SSEResponse(reply.relay, reply.status, headers, on_done=done)

    def _error(self, exchange: _Exchange, exc: RouterError) -> Response:
        """Render one of our errors in the family's native format."""
        family = self._family
        headers = {"x-router-attempts": "0"}
        code: str | None = None
        param: str | None = None
        if isinstance(exc, ClientRequestError):
            status, message, code, param = exc.status, exc.message, exc.code, exc.param
            headers.update(exc.headers)
        elif isinstance(exc, NoProviderError):
            status, message, code = exc.status, exc.message, exc.code
        elif isinstance(exc, AllProvidersFailed):
            message = exc.message
            exchange.attempts = exc.attempts
            headers["x-router-attempts"] = str(len(exc.attempts))
            if exc.attempts:
                headers["x-router-provider"] = exc.attempts[-1].provider
            if exc.retry_after is not None:
                status, code = 429, "all_providers_rate_limited"
                headers["retry-after"] = str(int(exc.retry_after))
            else:
                status, code = 502, "all_providers_failed"
        else:
            status, message = 500, "The router failed to handle this request."
        exchange.status = status
        body = family.error_body(status, message, code=code, param=param)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    def _finish(self, exchange: _Exchange, first_byte: float | None, outcome: str | None) -> None:
        """Report a request once it is over: metrics and one access-log line."""
        metrics, name = self._metrics, self._name
        self._in_flight.dec()
        provider = exchange.provider or "none"
        metrics.requests.labels(name, provider, str(exchange.status)).inc()
        if exchange.attempts:
            metrics.observe_attempts(name, exchange.attempts)
        if exchange.overhead is not None:
            self._overhead.observe(exchange.overhead)
        if outcome is not None:
            metrics.stream_outcomes.labels(name, provider, outcome).inc()
        if not access_log.isEnabledFor(logging.INFO):
            return
        latency = time.perf_counter() - exchange.started
        event: dict[str, object] = {
            "request_id": exchange.request_id,
            "family": name,
            "model": exchange.model,
            "provider": exchange.provider,
            "status": exchange.status,
            "latency_ms": round(latency * 1000, 2),
            "stream": exchange.stream,
            "attempts": [
                {
                    "provider": a.provider,
                    "outcome": a.outcome,
                    "status": a.status,
                    "latency_ms": round(a.latency * 1000, 2),
                }
                for a in exchange.attempts
            ],
        }
        if exchange.upstream_request_id:
            event["upstream_request_id"] = exchange.upstream_request_id
        if exchange.stream and first_byte is not None:
            event["ttfb_ms"] = round((first_byte - exchange.started) * 1000, 2)
        if outcome is not None:
            event["stream_outcome"] = outcome
        access_log.info(
            "%s %s -> %s via %s",
            name,
            exchange.model,
            exchange.status,
            exchange.provider or "-",
            extra=event,
        )


def _request_id(request: Request) -> str:
    supplied = request.headers.get("x-request-id")
    if supplied and _CLIENT_REQUEST_ID.match(supplied):
        return supplied
    return os.urandom(12).hex()


async def _read_body(request: Request, limit: int) -> bytes:
    headers = request.headers
    content_type = headers.get("content-type")
    if content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in _JSON_TYPES and not media_type.endswith("+json"):
            raise ClientRequestError(
                415,
                f"Unsupported content type '{media_type}'; send the body as application/json.",
            )
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise ClientRequestError(415, f"Unsupported content encoding '{encoding}'.")
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ClientRequestError:
    return ClientRequestError(
        413,
        f"The request body is larger than the limit of {limit} bytes.",
        code="request_too_large",
    )
