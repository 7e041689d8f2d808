"""The ASGI application: routes, lifespan and the HTTP edge of every error.

``create_app(config)`` builds the app; nothing happens at import time.  The upstream
client is created and closed by the app's lifespan, so an app object can be imported,
served by any ASGI server, or driven in tests with an injected ``transport`` and ``clock``.
A started app can :meth:`~RouterApp.reload` a new config (requests already running finish
on the old one) and :meth:`~RouterApp.interrupt_streams` at the end of a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from llm_api_router._version import __version__
from llm_api_router.accesslog import AccessLogMiddleware
from llm_api_router.auth import RouterKeys
from llm_api_router.catalog import ModelCatalog
from llm_api_router.config import FAMILIES, Family, ProviderConfig, RouterConfig
from llm_api_router.dispatch import Dispatcher
from llm_api_router.docs import add_offline_docs
from llm_api_router.endpoint import FamilyEndpoint
from llm_api_router.families import ApiFamily, family_for
from llm_api_router.health import HealthSnapshot
from llm_api_router.logs import Redactor, install_redaction
from llm_api_router.metrics import CONTENT_TYPE, RouterMetrics
from llm_api_router.scrub import SecretScrubber
from llm_api_router.state import SharedState, create_state
from llm_api_router.streaming import OpenStreams
from llm_api_router.upstream import AiohttpTransport, Transport

__all__ = ["NO_PROVIDERS", "ROUTES", "RouterApp", "create_app"]

logger = logging.getLogger("llm_api_router.server")

Clock = Callable[[], float]

#: Client-facing chat routes of each family (native first, then aliases).
ROUTES: Mapping[Family, tuple[str, ...]] = {
    "openai": ("/openai/chat/completions", "/openai/v1/chat/completions"),
    "anthropic": ("/anthropic/chat/completions", "/anthropic/v1/messages"),
}
NO_PROVIDERS = (
    "No provider is configured, so every API request is answered 503. Create "
    "llm_router_config.json in the working directory (see llm_router_config.example.json), "
    "pass --config PATH, or set OPENAI_API_KEY and/or ANTHROPIC_API_KEY."
)
_FAMILY_PREFIXES: tuple[tuple[str, Family], ...] = tuple((f"/{name}/", name) for name in FAMILIES)


class RouterApp(FastAPI):
    """The router's ASGI app: every request under a family goes straight to that family's
    endpoint (the hot path); everything else (info routes, docs, error pages) is FastAPI,
    where ``HEAD`` is answered like ``GET`` without the body."""

    open_streams: OpenStreams

    def reload(self, config: RouterConfig) -> None:
        """Serve ``config`` from now on: new requests use its providers, running ones finish
        on the old; provider health carries over by provider name.  Needs a started app."""
        reloader: Callable[[RouterConfig], None] | None = getattr(self.state, "reloader", None)
        if reloader is None:
            raise RuntimeError("the app is not started: nothing to reload")
        reloader(config)

    def interrupt_streams(self, message: str) -> int:
        """End every open stream now with the family's native 503 error event (shutdown)."""
        return self.open_streams.interrupt_all(503, message, code="shutting_down")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            runtime: _Runtime | None = getattr(self.state, "runtime", None)
            if runtime is not None:
                for prefix, family in _FAMILY_PREFIXES:
                    if path.startswith(prefix):
                        await _guarded(runtime.endpoints[family], scope, receive, send)
                        return
            if scope["method"] == "HEAD":
                await super().__call__({**scope, "method": "GET"}, receive, _without_body(send))
                return
        await super().__call__(scope, receive, send)


def _without_body(send: Send) -> Send:
    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return head_send


async def _guarded(endpoint: FamilyEndpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the chat endpoint; an unexpected error becomes a native 500, never a traceback."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        started = True
        await send(message)

    try:
        await endpoint(scope, receive, tracking_send)
    except asyncio.CancelledError:
        # Only the server cancels a request (the end of a shutdown): answer it natively.
        if started:
            raise
        logger.warning("request to %s ended by the shutdown before its answer", scope["path"])
        body = endpoint.family.error_body(
            503, "The router is shutting down; retry the request.", code="shutting_down"
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception as exc:
        logger.exception("unhandled %s on %s", type(exc).__name__, scope["path"])
        if started:
            raise
        body = endpoint.family.error_body(500, "The router failed to handle this request.")
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass(slots=True)
class _Runtime:
    """What the lifespan builds: per family a dispatcher and its endpoint; the metrics;
    where provider state lives."""

    dispatchers: dict[Family, Dispatcher]
    endpoints: dict[Family, FamilyEndpoint]
    metrics: RouterMetrics
    state: SharedState


def create_app(
    config: RouterConfig | None = None,
    *,
    transport: Transport | None = None,
    clock: Clock | None = None,
) -> RouterApp:
    """Build the router's ASGI app for ``config`` (default: no providers).

    ``transport`` replaces the pooled aiohttp client (tests); ``clock`` replaces
    ``time.monotonic`` for cooldowns and the circuit breaker.
    """
    config = config if config is not None else RouterConfig()
    monotonic = clock or time.monotonic

    streams = OpenStreams()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secrets = set(config.secrets())
        install_redaction(Redactor(secrets))

        def provider_table(now: float) -> Iterator[tuple[str, ProviderConfig, HealthSnapshot]]:
            runtime: _Runtime | None = getattr(app.state, "runtime", None)
            if runtime is None:
                return
            for name, dispatcher in runtime.dispatchers.items():
                for provider, snapshot in dispatcher.snapshots(now):
                    yield name, provider, snapshot

        async with AsyncExitStack() as stack:
            upstream: Transport = (
                transport
                if transport is not None
                else await stack.enter_async_context(AiohttpTransport())
            )
            # One state for the app's life: a reload keeps what it learned (and its Redis).
            state = await stack.enter_async_context(create_state(config, monotonic))
            metrics = RouterMetrics(provider_table, monotonic, shared_state=lambda: state.status)

            def reload(new_config: RouterConfig) -> None:
                runtime = _build_runtime(new_config, upstream, monotonic, metrics, streams, state)
                _carry_health(app.state.runtime, runtime)
                # Requests still running on the old config may log its keys: redact both.
                secrets.update(new_config.secrets())
                install_redaction(Redactor(secrets))
                app.state.runtime = runtime  # one assignment: each request reads it once
                _log_startup(new_config)

            app.state.runtime = _build_runtime(config, upstream, monotonic, metrics, streams, state)
            app.state.reloader = reload
            _log_startup(config)
            try:
                yield
            finally:
                app.state.reloader = None

    app = RouterApp(
        title="LLM API Router",
        version=__version__,
        summary="OpenAI and Anthropic endpoints with priority routing and automatic fallback.",
        lifespan=lifespan,
        # A redirect would be built from the client's Host header (an open-redirect shape).
        redirect_slashes=False,
        docs_url=None,  # served offline by add_offline_docs, not from a CDN
        redoc_url=None,
    )
    app.open_streams = streams
    add_offline_docs(app)
    _add_info_routes(app, monotonic)
    for name in FAMILIES:
        _add_chat_routes(app, family_for(name))
    _add_error_handlers(app)
    app.add_middleware(AccessLogMiddleware)  # chat requests are logged by their endpoint
    return app


def _build_runtime(
    config: RouterConfig,
    transport: Transport,
    clock: Clock,
    metrics: RouterMetrics,
    streams: OpenStreams,
    state: SharedState,
) -> _Runtime:
    scrubber = SecretScrubber(config.secrets())
    dispatchers = {
        name: Dispatcher(
            family_for(name),
            config.providers(name),
            config.settings,
            transport,
            clock=clock,
            scrubber=scrubber,
            state=state,
        )
        for name in FAMILIES
    }
    keys = RouterKeys(k.get_secret_value() for k in config.auth.api_keys)
    endpoints = {
        name: FamilyEndpoint(
            dispatcher.family,
            dispatcher,
            keys,
            metrics,
            config.settings.max_body_bytes,
            ModelCatalog(dispatcher.family, dispatcher, clock=clock),
            streams,
        )
        for name, dispatcher in dispatchers.items()
    }
    return _Runtime(dispatchers, endpoints, metrics, state)


def _carry_health(old: _Runtime, new: _Runtime) -> None:
    """Give each provider of ``new`` the health state of its namesake in ``old``."""
    for name, dispatcher in new.dispatchers.items():
        previous = old.dispatchers.get(name)
        if previous is None:
            continue
        by_name = {provider.name: health for provider, health in previous.providers}
        dispatcher.providers = tuple(
            (provider, by_name.get(provider.name, health))
            for provider, health in dispatcher.providers
        )


def _log_startup(config: RouterConfig) -> None:
    for name in FAMILIES:
        providers = config.providers(name)
        listed = ", ".join(f"{p.name} (priority {p.priority})" for p in providers) or "none"
        logger.info(
            "%s providers: %s",
            name,
            listed,
            extra={"family": name, "providers": [[p.name, p.priority] for p in providers]},
        )
    logger.info("router keys: %s", "required" if config.auth.api_keys else "not configured (open)")
    if not any(config.providers(name) for name in FAMILIES):
        logger.warning(NO_PROVIDERS)


# -- chat routes ---------------------------------------------------------------------------


def _add_chat_routes(app: FastAPI, family: ApiFamily) -> None:
    """Declare the chat routes for the docs and OpenAPI schema.

    ``RouterApp.__call__`` sends POSTs to these paths to their ChatEndpoint before FastAPI
    routing; this route function only runs when the lifespan has not built the endpoints.
    """
    name = family.name

    async def chat(request: Request) -> Response:
        body = family.error_body(
            503, "The router is not started: serve the app with its lifespan enabled."
        )
        return Response(body, status_code=503, media_type="application/json")

    schema = _request_schema(family)
    for path in ROUTES[name]:
        app.add_api_route(
            path,
            chat,
            methods=["POST"],
            name=f"{name}_chat{'_alias' if path != ROUTES[name][0] else ''}",
            tags=[name],
            summary=f"{'Chat completion' if name == 'openai' else 'Message'} ({name} format)",
            description=(
                f"Forwarded to the best available {name} provider; the body is passed on "
                "unchanged (only `model` may be renamed by a provider's `models` mapping). "
                "`stream: true` returns server-sent events."
            ),
            openapi_extra={"requestBody": {"required": True, "content": schema}},
            response_class=Response,
        )


def _request_schema(family: ApiFamily) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "model": {"type": "string", "example": "gpt-4o-mini"},
        "messages": {"type": "array", "items": {"type": "object"}},
        "stream": {"type": "boolean", "default": False},
    }
    if family.name == "anthropic":
        properties["model"]["example"] = "claude-sonnet-5-5"
        properties["max_tokens"] = {"type": "integer", "minimum": 1}
    else:
        properties["stream_options"] = {"type": "object"}
    return {
        "application/json": {
            "schema": {
                "type": "object",
                "required": list(family.required_fields),
                "properties": properties,
                "additionalProperties": True,
            }
        }
    }


# -- info routes ---------------------------------------------------------------------------


def _add_info_routes(app: FastAPI, clock: Clock) -> None:
    @app.get("/", tags=["router"], summary="Server information and routes")
    async def root() -> dict[str, Any]:
        return {
            "name": "llm-api-router",
            "version": __version__,
            "routes": {
                **{name: list(paths) for name, paths in ROUTES.items()},
                "health": "/health",
                "metrics": "/metrics",
                "docs": "/docs",
            },
        }

    @app.get(
        "/metrics",
        tags=["router"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}}},
    )
    async def metrics(request: Request) -> Response:
        runtime: _Runtime = request.app.state.runtime
        return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/health", tags=["router"], summary="Liveness and every provider's state")
    async def health(request: Request) -> dict[str, Any]:
        runtime: _Runtime = request.app.state.runtime
        now = clock()
        providers: dict[str, list[dict[str, Any]]] = {}
        cooldowns: dict[str, list[dict[str, Any]]] = {}
        for name, dispatcher in runtime.dispatchers.items():
            rows = []
            cooldowns[name] = dispatcher.cooldowns(now)
            for provider, snapshot in dispatcher.snapshots(now):
                rows.append(
                    {
                        "name": provider.name,
                        "family": name,
                        "account": provider.account_name,
                        "priority": provider.priority,
                        "state": snapshot.state.value,
                        "cooldown_seconds_left": snapshot.seconds_left,
                        "recent_failures": snapshot.recent_failures,
                        "consecutive_failures": snapshot.consecutive_failures,
                        "last_failure": snapshot.last_failure,
                    }
                )
            providers[name] = rows
        if not any(providers.values()):
            # Still 200: the process is alive, and a restart (what a failing liveness probe
            # brings) cannot fix a config; the status and message say what is wrong.
            return {
                "status": "no_providers",
                "message": NO_PROVIDERS,
                "version": __version__,
                "shared_state": runtime.state.status,
                "worker": os.getpid(),
                "providers": providers,
            }
        return {
            "status": "ok",
            "version": __version__,
            "shared_state": runtime.state.status,
            "worker": os.getpid(),
            "providers": providers,
            "cooldowns": cooldowns,
        }


# -- errors at the edge ----------------------------------------------------------------------


def _add_error_handlers(app: FastAPI) -> None:
    def family_of(request: Request) -> ApiFamily | None:
        first = request.url.path.lstrip("/").split("/", 1)[0]
        for name in FAMILIES:
            if first == name:
                return family_for(name)
        return None

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        family = family_of(request)
        if exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
        elif exc.status_code == 404:
            message = f"No route {request.url.path}; see GET / for the routes."
        else:
            message = str(exc.detail)
        headers = dict(exc.headers or {})
        if family is None:
            return JSONResponse({"detail": message}, status_code=exc.status_code, headers=headers)
        if exc.status_code == 404:
            body = _route_not_found(family, request.method, request.url.path)
        else:
            body = family.error_body(exc.status_code, message)
        return Response(
            body, status_code=exc.status_code, headers=headers, media_type="application/json"
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        # Never a traceback or an exception message to the client: they may hold details.
        logger.error("unhandled %s on %s", type(exc).__name__, request.url.path)
        family = family_of(request) or family_for("openai")
        body = family.error_body(500, "The router failed to handle this request.")
        return Response(body, status_code=500, media_type="application/json")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _route_not_found(family: ApiFamily, method: str, path: str) -> bytes:
    """The family's own answer to an unknown URL (``model_not_found`` is for models only):
    OpenAI's ``invalid_request_error`` with a null code, Anthropic's ``not_found_error``."""
    if family.name == "openai":
        return family.error_body(404, f"Invalid URL ({method} {path})")
    return family.error_body(404, f"Not Found: {method} {path} is not a route of this router.")
