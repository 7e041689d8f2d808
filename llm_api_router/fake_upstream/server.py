"""The fake upstream HTTP server: routes a request to its operation, applies the provider's
next behaviour, and serves the ``/_control`` API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from . import routes
from .accounts import Accounts, OwnedObject
from .behaviours import (
    Behaviour,
    Drop,
    Error,
    Hang,
    Ok,
    Raw,
    Stream,
    check_non_negative,
)
from .call import ApiError, Call, EventWriter, Reply, StreamReply
from .control import CONTROL_PREFIX, handle_control
from .exchange import Exchange
from .recording import Family, RecordedRequest, State
from .routes import Operation
from .wire import (
    JSON_CT,
    SSE_CT,
    anthropic_error,
    dumps,
    header_dict,
    lower_headers,
    openai_error,
    split_text,
)

__all__ = ["FakeUpstream"]

_FOREVER = math.inf


class FakeUpstream:
    """The fake upstream server, to be driven from the event loop it was started on.

    The configuration methods (:meth:`script`, :meth:`set_default`, :meth:`set_account`,
    :meth:`set_models`, :meth:`reset`, :meth:`requests`, :meth:`objects`) are synchronous and
    thread-safe. ``stream_interval`` is the delay between content events when :class:`Ok`
    answers a streaming request.
    """

    def __init__(self, *, stream_interval: float = 0.0, access_log: bool = False) -> None:
        check_non_negative(self, stream_interval=stream_interval)
        self._stream_interval = stream_interval
        self._access_log = access_log
        self._state = State()
        self._accounts = Accounts()
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self._stopping = False
        self._inflight: set[Exchange] = set()

    # ----- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and start serving (``port=0`` picks a free port)."""
        if self._runner is not None:
            raise RuntimeError("FakeUpstream is already started")
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        kwargs: dict[str, Any] = {} if self._access_log else {"access_log": None}
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, **kwargs)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._stopping = False
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close every connection (in-flight requests included) and stop serving."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for ex in list(self._inflight):
            if ex.request.transport is not None:
                ex.request.transport.close()
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----- addresses

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (wildcard hosts are shown as 127.0.0.1)."""
        host = self._host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def base_url(self, provider: str, family: Family) -> str:
        """The SDK ``base_url`` of ``provider``: ``.../{provider}/v1`` (OpenAI) or
        ``.../{provider}`` (Anthropic)."""
        if not provider or "/" in provider or provider.startswith("_"):
            raise ValueError(f"invalid provider name {provider!r}")
        if family == "openai":
            return f"{self.url}/{provider}/v1"
        if family == "anthropic":
            return f"{self.url}/{provider}"
        raise ValueError(f"unknown family {family!r}")

    # ----- configuration (thread-safe)

    def script(self, provider: str, *behaviours: Behaviour, operation: str | None = None) -> None:
        """Append behaviours to ``provider``'s queue (one per future request, any endpoint).

        With ``operation`` (an operation name such as ``"messages.count_tokens"`` or
        ``"embeddings"``, see :attr:`RecordedRequest.operation`) they go to a queue of that
        endpoint only, which its requests use before the provider's queue."""
        routes.check_operation(operation)
        self._state.script(provider, behaviours, operation)

    def set_default(
        self, provider: str, behaviour: Behaviour, *, operation: str | None = None
    ) -> None:
        """Set what ``provider`` does once its queues are empty (for one endpoint only, with
        ``operation``)."""
        routes.check_operation(operation)
        self._state.set_default(provider, behaviour, operation)

    def set_account(self, provider: str, account: str) -> None:
        """Put ``provider`` into ``account``: objects created through any provider of an
        account are visible through all of them, and not found through any other."""
        self._accounts.set_account(provider, account)

    def account_of(self, provider: str) -> str:
        """``provider``'s account (its own name unless :meth:`set_account` said otherwise)."""
        return self._accounts.account_of(provider)

    def set_models(self, provider: str, models: Sequence[str]) -> None:
        """The model ids ``provider``'s ``models`` endpoints list (default: a fixed list of
        real names per family)."""
        self._accounts.set_models(provider, models)

    def objects(self, account: str | None = None) -> list[OwnedObject]:
        """Every owned object (id, kind, account), optionally of one account only."""
        return self._accounts.objects(account)

    def reset(self) -> None:
        """Forget queues, defaults, recorded requests, accounts, models and objects."""
        self._state.reset()
        self._accounts.reset()

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, oldest first, optionally of one provider only."""
        return self._state.requests(provider)

    async def wait_for_disconnect(
        self, provider: str, timeout: float = 2.0
    ) -> RecordedRequest | None:
        """The latest request of ``provider`` whose client went away (waits for one)."""
        deadline = time.monotonic() + timeout
        while (rec := self._state.find_disconnected(provider)) is None:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.01)
        return rec

    def wait_for_disconnect_blocking(
        self, provider: str, timeout: float = 2.0
    ) -> RecordedRequest | None:
        """Like :meth:`wait_for_disconnect`, but blocking: call it from another thread."""
        return self._state.wait_for_disconnect(provider, timeout)

    # ----- request handling

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return await handle_control(self, request)
        received_at = time.monotonic()
        provider, _, rest = path.lstrip("/").partition("/")
        headers = header_dict(request.headers.items())
        prefer: Family = "anthropic" if "anthropic-version" in headers else "openai"
        found = None
        if rest.startswith("v1/"):
            found = routes.match(request.method, rest[3:], prefer)
        operation, params = found if found is not None else (None, {})
        body = await request.read()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            provider=provider,
            family=operation.family if operation is not None else None,
            method=request.method,
            path=path,
            query=request.query_string,
            headers=headers,
            body=body,
            json=parsed,
            received_at=received_at,
            operation=operation.name if operation is not None else None,
        )
        handle = self._state.record(record)
        behaviour, count = self._state.next_behaviour(
            provider, operation.name if operation is not None else None
        )
        family = operation.family if operation is not None else prefer
        ex = Exchange(
            request,
            provider,
            family,
            operation,
            params,
            headers,
            body,
            parsed,
            received_at,
            handle,
            count,
        )
        self._inflight.add(ex)
        try:
            return await self._respond(ex, behaviour)
        except asyncio.CancelledError:
            # handler_cancellation=True: aiohttp cancels us when the connection is lost.
            self._client_gone(ex)
            raise
        finally:
            self._inflight.discard(ex)

    def _client_gone(self, ex: Exchange) -> None:
        if not (ex.closed_by_fake or ex.client_gone or self._stopping):
            ex.client_gone = True
            self._state.update(ex.handle, disconnected_at=time.monotonic(), completed=False)

    async def _finish(
        self, ex: Exchange, response: web.StreamResponse, tail: Sequence[bytes] = ()
    ) -> None:
        """Write the final ``tail`` events and end ``response``.

        ``completed`` is recorded *before* the last bytes are handed to the transport (with no
        suspension point in between unless the client stops reading), so a test that has seen
        the end of a response always sees ``completed=True``. It is reverted if the client
        turns out to be gone.
        """
        self._state.update(ex.handle, completed=True)
        try:
            for event in tail:
                await response.write(event)
            await response.write_eof()
        except ConnectionError:
            self._client_gone(ex)

    async def _pause(self, ex: Exchange, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the client went away meanwhile.

        Disconnects normally arrive as a cancellation (``handler_cancellation=True``); the
        transport check is a fallback in case a disconnect does not cancel the handler.
        """
        deadline = time.monotonic() + seconds
        while True:
            transport = ex.request.transport
            if transport is None or transport.is_closing():
                self._client_gone(ex)
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, 0.1))

    def _close(self, ex: Exchange, reset: bool = False) -> None:
        ex.closed_by_fake = True
        transport = ex.request.transport
        if transport is None:
            return
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()

    async def _send(self, ex: Exchange, response: web.StreamResponse) -> web.StreamResponse:
        """Send a complete response now, so that ``completed`` can be recorded truthfully."""
        try:
            await response.prepare(ex.request)
        except ConnectionError:
            self._client_gone(ex)
            return response
        await self._finish(ex, response)
        return response

    def _call(self, ex: Exchange, operation: Operation, text: str | None) -> Call:
        return Call(
            provider=ex.provider,
            account=self._accounts.account_of(ex.provider),
            family=operation.family,
            operation=operation.name,
            params=ex.params,
            query=ex.request.query,
            headers=ex.headers,
            body=ex.raw,
            json=ex.body,
            api_base=f"{self.url}/{ex.provider}",
            objects=self._accounts,
            text=text if text is not None else f"Hello from {ex.provider}",
            models=self._accounts.models_of(ex.provider),
        )

    def _writer(self, ex: Exchange, call: Call) -> EventWriter:
        assert ex.operation is not None
        factory = ex.operation.events or routes.default_events(ex.family)
        return factory(call, call.text)

    async def _respond(self, ex: Exchange, behaviour: Behaviour) -> web.StreamResponse:
        if isinstance(behaviour, Ok):
            if behaviour.delay and await self._pause(ex, behaviour.delay):
                return web.Response()
            if ex.operation is None:
                return await self._send(ex, self._unknown_path(ex))
            call = self._call(ex, ex.operation, behaviour.text)
            try:
                reply = ex.operation.handler(call)
            except ApiError as exc:
                error = Error(
                    exc.status,
                    exc.error_type
                    or ("invalid_request_error" if ex.family == "openai" and exc.code else None),
                    exc.code,
                    exc.message,
                )
                return await self._send(ex, self._error_from(ex, error, exc.param))
            if isinstance(reply, StreamReply):
                spec = Stream(
                    text=call.text, interval=self._stream_interval, headers=behaviour.headers
                )
                return await self._stream(ex, spec, self._writer(ex, call))
            return await self._send(ex, self._reply(ex, reply, behaviour.headers))
        if isinstance(behaviour, Error):
            if behaviour.delay and await self._pause(ex, behaviour.delay):
                return web.Response()
            return await self._send(ex, self._error_from(ex, behaviour))
        if isinstance(behaviour, Raw):
            headers = lower_headers({"content-type": behaviour.content_type}, behaviour.headers)
            raw = web.Response(status=behaviour.status, body=behaviour.body, headers=headers)
            return await self._send(ex, raw)
        if isinstance(behaviour, Hang):
            if not await self._pause(ex, behaviour.seconds):
                self._close(ex)
            return web.Response()
        if isinstance(behaviour, Drop):
            self._close(ex, reset=behaviour.reset)
            return web.Response()
        if ex.operation is None:  # a stream on an unknown path: the family's chat format
            ex.operation = routes.chat_operation(ex.family)
        call = self._call(ex, ex.operation, behaviour.text)
        return await self._stream(ex, behaviour, self._writer(ex, call))

    def _reply(self, ex: Exchange, reply: Reply, extra: Mapping[str, str]) -> web.Response:
        headers = lower_headers(
            ex.success_headers(), {"content-type": reply.content_type}, reply.headers, extra
        )
        return web.Response(status=reply.status, body=reply.encoded(), headers=headers)

    def _unknown_path(self, ex: Exchange) -> web.Response:
        if ex.family == "anthropic":
            error = Error(404, error_type="not_found_error", message="Not Found")
            return self._error_from(ex, error)
        rest = "/" + ex.request.path.lstrip("/").partition("/")[2]
        body = {
            "error": {
                "message": f"Invalid URL ({ex.request.method} {rest})",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
        headers = lower_headers(ex.base_headers(), {"content-type": JSON_CT})
        return web.Response(status=404, body=dumps(body), headers=headers)

    def _error_from(self, ex: Exchange, error: Error, param: str | None = None) -> web.Response:
        body: dict[str, Any]
        if ex.family == "openai":
            body = openai_error(error, ex.model)
            body["error"]["param"] = param
        else:
            body = anthropic_error(error, ex.model, ex.request_id)
        headers = lower_headers(ex.base_headers(), {"content-type": JSON_CT}, error.headers)
        return web.Response(status=error.status, body=dumps(body), headers=headers)

    async def _stream(self, ex: Exchange, spec: Stream, events: EventWriter) -> web.StreamResponse:
        text = spec.text if spec.text is not None else f"Hello from {ex.provider}"
        pieces = split_text(text, spec.chunks)
        headers = lower_headers(
            ex.success_headers(),
            {"content-type": SSE_CT, "cache-control": "no-cache"},
            spec.headers,
        )
        response = web.StreamResponse(status=200, headers=headers)
        response.enable_chunked_encoding()
        try:
            await response.prepare(ex.request)
            if spec.first_event_delay and await self._pause(ex, spec.first_event_delay):
                return response
            if spec.error_at != 0 or events.opens_always:
                for event in events.opening():
                    await response.write(event)
            tail: list[bytes] = []
            for k in range(len(pieces) + 1):
                if spec.malformed_at == k:
                    await response.write(events.malformed())
                if spec.error_at == k:
                    tail.extend(
                        events.error(
                            spec.error_type,
                            spec.error_message,
                            spec.error_code,
                            spec.responses_failure,
                        )
                    )
                    break
                if spec.cut_after == k:
                    self._close(ex)
                    return response
                if spec.stall_after == k:
                    await self._pause(ex, _FOREVER)
                    return response
                if k == len(pieces):
                    tail.extend(events.closing(spec.omit_done))
                    break
                if k and spec.interval and await self._pause(ex, spec.interval):
                    return response
                await response.write(events.content(pieces[k]))
            if spec.keep_open:
                for event in tail:
                    await response.write(event)
                await self._pause(ex, _FOREVER)
                return response
        except ConnectionError:
            self._client_gone(ex)
            return response
        await self._finish(ex, response, tail)
        return response
