"""The endpoint of one family, as a raw ASGI app: HTTP request in, dispatch, response out.

Every path under ``/<family>/`` comes here.  It checks the router key, finds the path's
operation in the family's table, reads the body (validating only what routing must read),
asks the dispatcher (or the model catalogue), renders the answer (or our error, natively),
and reports the request once: one access-log line and the request metrics, after the last
byte for streams.

This is the hot path, so it speaks ASGI directly instead of going through the web
framework's request/response objects and middleware; the framework still serves every
other route and documents these ones.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass, field

from starlette.types import Receive, Scope, Send

from llm_api_router.auth import RouterKeys
from llm_api_router.catalog import ModelCatalog
from llm_api_router.disconnect import ClientGone, ClientWatch, connection_lost_hook
from llm_api_router.dispatch import Dispatcher, Reply
from llm_api_router.errors import (
    AccountUnavailable,
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
from llm_api_router.streaming import OpenStreams, stream_to_client

__all__ = ["CLIENT_CLOSED_REQUEST", "REQUEST_ID_HEADER", "ChatEndpoint", "FamilyEndpoint"]

#: The response header that carries the router's request id.
REQUEST_ID_HEADER = "x-router-request-id"
#: Status logged for a client that left before its answer was sent (nginx's convention).
CLIENT_CLOSED_REQUEST = 499

_JSON_TYPES = ("application/json", "text/json")
_MULTIPART = "multipart/form-data"
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")

RawHeaders = list[tuple[bytes, bytes]]
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

access_log = logging.getLogger(ACCESS_LOGGER)


@dataclass(slots=True)
class _Exchange:
    """What the access log and metrics report about one client request."""

    request_id: str
    started: float
    operation: str = "chat"
    model: str | None = None
    stream: bool = False
    provider: str | None = None
    status: int = 0
    attempts: list[AttemptRecord] = field(default_factory=list)
    upstream_request_id: str | None = None
    overhead: float | None = None
    finished: bool = False
    #: Why the request was kept on one account or provider ("owner:<account>", "session").
    pinned: str | None = None


class FamilyEndpoint:
    """Every request under ``/<family>/``: one instance per family, built by the lifespan."""

    def __init__(
        self,
        family: ApiFamily,
        dispatcher: Dispatcher,
        keys: RouterKeys,
        metrics: RouterMetrics,
        max_body: int,
        catalog: ModelCatalog | None = None,
        streams: OpenStreams | None = None,
    ) -> None:
        self.family = self._family = family
        self._streams = streams
        self._dispatcher = dispatcher
        self._catalog = catalog or ModelCatalog(family, dispatcher)
        self._prefix = f"/{family.name}/"
        self._keys = keys
        self._metrics = metrics
        self._max_body = max_body
        self._name = family.name
        self._in_flight = metrics.in_flight.labels(family.name)
        self._overhead = metrics.overhead.labels(family.name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        exchange = _Exchange(_request_id(headers), time.perf_counter())
        self._in_flight.inc()
        # One watch for the dispatch and the stream (a callback on the router's own edge).
        watch = ClientWatch(receive, connection_lost_hook(scope))
        try:
            await self._answer(scope, headers, receive, send, exchange, watch)
        except ClientGone:
            exchange.status = CLIENT_CLOSED_REQUEST
            self._finish(exchange, None, "client_disconnected" if exchange.stream else None)
        except Exception:
            # A bug: the guard answers a native 500; the request is still logged and counted.
            exchange.status = exchange.status if exchange.finished else 500
            self._finish(exchange, None, None)
            raise
        except asyncio.CancelledError:
            # Only the server cancels a request (the end of a shutdown): the guard answers
            # 503 when nothing was sent yet; either way the request is logged and counted.
            if not exchange.finished:
                exchange.status = exchange.status or 503
                self._finish(exchange, None, "interrupted" if exchange.stream else None)
            raise
        except BaseException:
            if not exchange.finished:
                exchange.finished = True
                self._in_flight.dec()
            raise
        finally:
            watch.close()

    async def _answer(
        self,
        scope: Scope,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
        exchange: _Exchange,
        watch: ClientWatch,
    ) -> None:
        family = self._family
        try:
            if not self._keys.allows(headers):
                raise ClientRequestError(
                    401,
                    "Missing or invalid router key: send it as 'Authorization: Bearer <key>' "
                    "or 'x-api-key: <key>'.",
                    code="invalid_api_key",
                )
            method: str = scope["method"]
            path = family.operation_path(_below(scope, self._prefix))
            operation = family.operations.find(method, path)
            exchange.operation = operation.name
            raw_query = scope.get("query_string", b"")
            query = "?" + raw_query.decode("latin-1") if raw_query else ""
            forwarded = forward_request_headers(headers, family.private_request_headers)
            if operation.model_list:
                await _read_body(headers, receive, self._max_body, json_only=False)
                status, payload = await watch.guard(
                    self._catalog.answer(path, raw_query, forwarded)
                )
                exchange.status = status
                await _respond(send, status, [_JSON_CONTENT_TYPE, *self._id(exchange)], payload)
                self._finish(exchange, None, None)
                return
            body = await _read_body(
                headers,
                receive,
                self._max_body,
                json_only=operation.generation,
                form_ok=operation.accepts_form,
            )
            chat = family.parse_request(
                body,
                operation,
                method=method,
                path=path,
                content_type=headers.get("content-type"),
                origin=_origin(scope, headers),
            )
            exchange.model, exchange.stream = chat.model, chat.stream
            reply = await watch.guard(self._dispatcher.dispatch(chat, forwarded, query))
        except RouterError as exc:
            status, raw_headers, payload = self._error(exchange, exc)
            await _respond(send, status, raw_headers, payload)
            self._finish(exchange, None, None)
            return
        upstream_time = sum(a.latency for a in reply.attempts)
        exchange.overhead = max(0.0, time.perf_counter() - exchange.started - upstream_time)
        exchange.provider, exchange.status, exchange.attempts = (
            reply.provider,
            reply.status,
            reply.attempts,
        )
        exchange.pinned = reply.pinned
        exchange.upstream_request_id = reply.headers.get("x-request-id") or reply.headers.get(
            "request-id"
        )
        raw_headers = [(k.encode("latin-1"), _header_value(v)) for k, v in reply.headers.items()]
        raw_headers += [
            (b"x-router-provider", reply.provider.encode()),
            (b"x-router-attempts", str(len(reply.attempts)).encode()),
            (b"x-router-request-id", exchange.request_id.encode()),
        ]
        if isinstance(reply, Reply):
            await _respond(send, reply.status, raw_headers, reply.body)
            self._finish(exchange, None, None)
            return
        raw_headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]

        def done(first_byte: float | None, outcome: str) -> None:
            self._finish(exchange, first_byte, outcome)

        await stream_to_client(
            reply.relay, reply.status, raw_headers, watch, send, done, self._streams
        )

    @staticmethod
    def _id(exchange: _Exchange) -> RawHeaders:
        return [(b"x-router-request-id", exchange.request_id.encode())]

    def _error(self, exchange: _Exchange, exc: RouterError) -> tuple[int, RawHeaders, bytes]:
        """Render one of our errors in the family's native format."""
        family = self._family
        headers = {"x-router-attempts": "0", "x-router-request-id": exchange.request_id}
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
        elif isinstance(exc, AccountUnavailable):
            message = exc.message
            exchange.pinned = f"owner:{exc.account}"
            exchange.attempts = exc.attempts
            headers["x-router-attempts"] = str(len(exc.attempts))
            if exc.retry_after is not None:
                status, code = 429, "account_rate_limited"
                headers["retry-after"] = str(int(exc.retry_after))
            else:
                status, code = 503, "account_unavailable"
        else:
            status, message = 500, "The router failed to handle this request."
        exchange.status = status
        body = family.error_body(status, message, code=code, param=param)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append(_JSON_CONTENT_TYPE)
        return status, raw, body

    def _finish(self, exchange: _Exchange, first_byte: float | None, outcome: str | None) -> None:
        """Report a request once it is over: metrics and one access-log line."""
        if exchange.finished:
            return
        exchange.finished = True
        metrics, name = self._metrics, self._name
        self._in_flight.dec()
        provider = exchange.provider or "none"
        metrics.observe_request(name, provider, exchange.status, exchange.operation)
        if exchange.pinned is not None:
            reason = exchange.pinned.split(":", 1)[0]
            metrics.child(metrics.pinned, name, reason).inc()
        if exchange.attempts:
            metrics.observe_attempts(name, exchange.attempts)
        if exchange.overhead is not None:
            self._overhead.observe(exchange.overhead)
        if outcome is not None:
            metrics.child(metrics.stream_outcomes, name, provider, outcome).inc()
        if not access_log.isEnabledFor(logging.INFO):
            return
        latency = time.perf_counter() - exchange.started
        event: dict[str, object] = {
            "request_id": exchange.request_id,
            "family": name,
            "operation": exchange.operation,
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
        if exchange.pinned is not None:
            event["pinned"] = exchange.pinned
        if exchange.upstream_request_id:
            event["upstream_request_id"] = exchange.upstream_request_id
        if exchange.stream and first_byte is not None:
            event["ttfb_ms"] = round((first_byte - exchange.started) * 1000, 2)
        if outcome is not None:
            event["stream_outcome"] = outcome
        access_log.info(
            "%s %s %s -> %s via %s",
            name,
            exchange.operation,
            exchange.model,
            exchange.status,
            exchange.provider or "-",
            extra=event,
        )


def _request_id(headers: dict[str, str]) -> str:
    supplied = headers.get("x-request-id")
    if supplied and _CLIENT_REQUEST_ID.match(supplied):
        return supplied
    return os.urandom(12).hex()


ChatEndpoint = FamilyEndpoint  # the seed's name


def _below(scope: Scope, prefix: str) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path[len(prefix) :]


def _origin(scope: Scope, headers: dict[str, str]) -> str:
    """The router's own base URL as the client reached it (for rewritten upstream URLs)."""
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("127.0.0.1", 80)))
    scheme = scope.get("scheme", "http")
    return f"{scheme}://{host}{scope.get('root_path', '')}"


def _header_value(value: str) -> bytes:
    """An upstream header value as bytes; text that is not Latin-1 goes as UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


async def _read_body(
    headers: dict[str, str],
    receive: Receive,
    limit: int,
    *,
    json_only: bool = True,
    form_ok: bool = False,
) -> bytes:
    content_type = headers.get("content-type")
    if content_type is not None and json_only:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if (
            media_type not in _JSON_TYPES
            and not media_type.endswith("+json")
            and not (form_ok and media_type == _MULTIPART)
        ):
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
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and message["type"] == "http.request":
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while message["type"] == "http.request" and message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    if message["type"] == "http.disconnect":
        raise ClientGone
    return b"".join(chunks)


async def _respond(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _too_large(limit: int) -> ClientRequestError:
    return ClientRequestError(
        413,
        f"The request body is larger than the limit of {limit} bytes.",
        code="request_too_large",
    )
