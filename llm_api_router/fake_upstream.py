"""A fake OpenAI / Anthropic upstream: a real HTTP server with on-demand fault injection.

Many fake *providers* live in one aiohttp server; the first path segment names the provider
and the rest of the path selects the API family:

* OpenAI Chat Completions: ``POST /{provider}/v1/chat/completions``
  (a client's ``base_url`` is ``http://127.0.0.1:PORT/{provider}/v1``)
* Anthropic Messages: ``POST /{provider}/v1/messages``
  (a client's ``base_url`` is ``http://127.0.0.1:PORT/{provider}``)

Each request consumes the next scripted behaviour of its provider (:meth:`FakeUpstream.script`);
when that queue is empty the provider's default behaviour applies (:class:`Ok` unless changed
with :meth:`FakeUpstream.set_default`). Behaviours are frozen dataclasses: :class:`Ok`,
:class:`Error`, :class:`Raw`, :class:`Hang`, :class:`Drop` and :class:`Stream`. Every request is
recorded as a :class:`RecordedRequest`.

Use :class:`FakeUpstream` from async code, :class:`FakeUpstreamThread` from synchronous tests,
the ``/_control/*`` HTTP API from another process, or run this file as a script::

    python -m llm_api_router.fake_upstream --port 9000 --fail primary=429

Client disconnects are noticed through aiohttp's ``handler_cancellation=True``: when the peer
closes the socket, aiohttp cancels the handler task, even while it sleeps or stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias, cast

from aiohttp import web

__all__ = [
    "Behaviour",
    "Drop",
    "Error",
    "FakeUpstream",
    "FakeUpstreamThread",
    "Family",
    "Hang",
    "Ok",
    "Raw",
    "RecordedRequest",
    "Stream",
    "behaviour_from_dict",
    "behaviour_to_dict",
    "context_too_long",
    "error_for_status",
    "insufficient_quota",
    "main",
    "overloaded",
    "rate_limited",
]

Family: TypeAlias = Literal["openai", "anthropic"]

_CONTROL_PREFIX = "/_control"
_OPENAI_PATH = re.compile(r"/(?P<provider>[^/]+)/v1/chat/completions")
_ANTHROPIC_PATH = re.compile(r"/(?P<provider>[^/]+)/v1/messages")
_RATE_LIMIT = 10_000
_MALFORMED_DATA = b"data: {this is not json\n\n"
_JSON_CT = "application/json"
_SSE_CT = "text/event-stream; charset=utf-8"
_FOREVER = math.inf


# --------------------------------------------------------------------------- behaviours


def _check_non_negative(owner: object, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and (math.isnan(value) or value < 0):
            raise ValueError(f"{type(owner).__name__}.{name} must be >= 0, got {value!r}")


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"HTTP status must be in 100..599, got {status!r}")


@dataclass(frozen=True)
class Ok:
    """A faithful success response.

    ``text`` defaults to ``"Hello from {provider}"``. ``delay`` is waited before anything is
    sent. If the request body has ``"stream": true`` the answer is streamed like
    ``Stream(text=text, headers=headers)`` (with the server's ``stream_interval``).
    A request without a JSON object body, ``model`` or ``messages`` (or, for Anthropic,
    ``max_tokens``) gets the family's 400 error instead, as the real APIs do.
    """

    text: str | None = None
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_non_negative(self, delay=self.delay)


@dataclass(frozen=True)
class Error:
    """An error response with a faithful body in the provider family's format.

    ``None`` fields get realistic defaults that depend on the family and status (and on
    ``code`` where it identifies a well-known error, e.g. ``context_length_exceeded``).
    ``code`` only appears in OpenAI bodies. See also :func:`rate_limited`,
    :func:`insufficient_quota`, :func:`context_too_long`, :func:`overloaded`.
    """

    status: int
    error_type: str | None = None
    code: str | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def __post_init__(self) -> None:
        _check_status(self.status)
        _check_non_negative(self, delay=self.delay)


@dataclass(frozen=True)
class Raw:
    """Any status and body, sent verbatim (e.g. a 200 whose body is not JSON)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = _JSON_CT

    def __post_init__(self) -> None:
        _check_status(self.status)


@dataclass(frozen=True)
class Hang:
    """Read the request, then send nothing for ``seconds``.

    Stops early (recording ``disconnected_at``) if the client goes away. When the time is up,
    the connection is closed without a response.
    """

    seconds: float = 3600.0

    def __post_init__(self) -> None:
        _check_non_negative(self, seconds=self.seconds)


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the TCP connection without sending a single byte.

    With ``reset=True`` the socket is closed with ``SO_LINGER`` 0 so the client gets a TCP RST
    (``ECONNRESET``) instead of an orderly FIN.
    """

    reset: bool = False


@dataclass(frozen=True)
class Stream:
    """A server-sent-events stream in the family's format (always streamed, whatever ``stream``
    the request asked for).

    Positions ``k`` below count *content* events only (OpenAI content-delta chunks, Anthropic
    ``content_block_delta`` events) and mean "after ``k`` content events" (``k == 0``: after the
    opening events, i.e. role chunk / ``message_start`` .. ``ping``):

    * ``text`` (default ``"Hello from {provider}"``) is split into ``chunks`` content events,
      ``interval`` seconds apart; ``first_event_delay`` is waited after the 200 headers.
    * ``malformed_at``: insert an event whose data is ``{this is not json`` (for Anthropic it is
      named ``content_block_delta``, since the SDK ignores unnamed events), then go on normally.
    * ``error_at``: send the family's error event and end the response cleanly. ``error_at=0``
      sends it right after the headers, before any other event.
    * ``cut_after``: close the connection abruptly (no final events, no terminating chunk).
    * ``stall_after``: send nothing more, keep the connection open until the client leaves.
    * ``omit_done``: OpenAI only, leave out ``data: [DONE]`` (ignored for Anthropic).
    * ``keep_open``: after the last event, stay silent until the client leaves instead of ending
      the response.
    """

    text: str | None = None
    chunks: int = 5
    interval: float = 0.0
    first_event_delay: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    malformed_at: int | None = None
    error_at: int | None = None
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    omit_done: bool = False
    keep_open: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise ValueError(f"Stream.chunks must be >= 1, got {self.chunks!r}")
        _check_non_negative(
            self,
            interval=self.interval,
            first_event_delay=self.first_event_delay,
            cut_after=self.cut_after,
            stall_after=self.stall_after,
            malformed_at=self.malformed_at,
            error_at=self.error_at,
        )


Behaviour: TypeAlias = Ok | Error | Raw | Hang | Drop | Stream

_KINDS: dict[str, type[Behaviour]] = {
    "ok": Ok,
    "error": Error,
    "raw": Raw,
    "hang": Hang,
    "drop": Drop,
    "stream": Stream,
}


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def rate_limited(retry_after: float | None = None, retry_after_ms: float | None = None) -> Error:
    """A 429 rate-limit error, with ``retry-after`` / ``retry-after-ms`` headers if given."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = _format_seconds(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = _format_seconds(retry_after_ms)
    return Error(429, headers=headers)


def insufficient_quota() -> Error:
    """OpenAI's 429 ``insufficient_quota`` (an Anthropic provider renders a plain 429)."""
    return Error(429, code="insufficient_quota")


def context_too_long() -> Error:
    """A 400 "prompt too long" error (OpenAI code ``context_length_exceeded``)."""
    return Error(400, code="context_length_exceeded")


def overloaded() -> Error:
    """A 529 ``overloaded_error`` (Anthropic's overload; OpenAI gets a 529 ``server_error``)."""
    return Error(529)


def error_for_status(status: int) -> Error:
    """The typical error for ``status``; 429 comes with ``retry-after: 30``."""
    return rate_limited(retry_after=30) if status == 429 else Error(status)


def behaviour_from_dict(data: object) -> Behaviour:
    """Build a behaviour from ``{"kind": "error", "status": 429, ...}``.

    ``kind`` is one of ok/error/raw/hang/drop/stream; other keys are the dataclass fields
    (``Raw.body`` may be a string, encoded as UTF-8). Raises ``ValueError`` on bad input.
    """
    if not isinstance(data, Mapping):
        raise ValueError("a behaviour must be a JSON object")
    kwargs = dict(data)
    kind = kwargs.pop("kind", None)
    if not isinstance(kind, str) or kind.lower() not in _KINDS:
        raise ValueError(f"behaviour kind must be one of {sorted(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind.lower()]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ValueError(f"unknown field(s) for {kind!r}: {', '.join(unknown)}")
    if "headers" in kwargs:
        headers = kwargs["headers"]
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("headers must be an object of string values")
    if cls is Raw and isinstance(kwargs.get("body"), str):
        kwargs["body"] = kwargs["body"].encode()
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad fields for {kind!r}: {exc}") from exc


def behaviour_to_dict(behaviour: Behaviour) -> dict[str, Any]:
    """The inverse of :func:`behaviour_from_dict` (``Raw.body`` decoded as UTF-8)."""
    kind = next(name for name, cls in _KINDS.items() if isinstance(behaviour, cls))
    out: dict[str, Any] = {"kind": kind}
    for f in dataclasses.fields(behaviour):
        value = getattr(behaviour, f.name)
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        out[f.name] = value
    return out


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by the fake: an immutable snapshot (call ``requests()`` again to
    see later changes of ``disconnected_at`` / ``completed``).

    ``family`` is ``None`` for paths that matched no API (answered 404). ``disconnected_at``
    (``time.monotonic()``) is set when the client went away before the response ended;
    ``completed`` is true once the whole scripted response was sent.
    """

    provider: str
    family: Family | None
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float
    disconnected_at: float | None = None
    completed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (``body`` decoded as UTF-8 text)."""
        out = dataclasses.asdict(self)
        out["body"] = self.body.decode("utf-8", errors="replace")
        return out


class _State:
    """Queues, defaults and records, shared by the server loop and test threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Behaviour]] = {}
        self._defaults: dict[str, Behaviour] = {}
        self._records: list[RecordedRequest] = []
        self._counts: dict[str, int] = {}
        self._generation = 0

    def script(self, provider: str, behaviours: Sequence[Behaviour]) -> None:
        for behaviour in behaviours:
            if not isinstance(behaviour, tuple(_KINDS.values())):
                raise TypeError(f"not a behaviour: {behaviour!r}")
        with self._cond:
            self._queues.setdefault(provider, deque()).extend(behaviours)

    def set_default(self, provider: str, behaviour: Behaviour) -> None:
        if not isinstance(behaviour, tuple(_KINDS.values())):
            raise TypeError(f"not a behaviour: {behaviour!r}")
        with self._cond:
            self._defaults[provider] = behaviour

    def reset(self) -> None:
        with self._cond:
            self._queues.clear()
            self._defaults.clear()
            self._records.clear()
            self._counts.clear()
            self._generation += 1
            self._cond.notify_all()

    def record(self, rec: RecordedRequest) -> tuple[int, int]:
        """Store ``rec``; return a handle for :meth:`update`."""
        with self._cond:
            self._records.append(rec)
            return self._generation, len(self._records) - 1

    def next_behaviour(self, provider: str) -> tuple[Behaviour, int]:
        """Pop the provider's next behaviour; also return its request count (1-based)."""
        with self._cond:
            self._counts[provider] = count = self._counts.get(provider, 0) + 1
            queue = self._queues.get(provider)
            if queue:
                return queue.popleft(), count
            return self._defaults.get(provider, Ok()), count

    def update(self, handle: tuple[int, int], **changes: Any) -> None:
        generation, index = handle
        with self._cond:
            if generation == self._generation:
                self._records[index] = dataclasses.replace(self._records[index], **changes)
                self._cond.notify_all()

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self._records if provider is None or r.provider == provider]

    def _find_disconnected(self, provider: str) -> RecordedRequest | None:
        for rec in reversed(self._records):
            if rec.provider == provider and rec.disconnected_at is not None:
                return rec
        return None

    def find_disconnected(self, provider: str) -> RecordedRequest | None:
        with self._cond:
            return self._find_disconnected(provider)

    def wait_for_disconnect(self, provider: str, timeout: float) -> RecordedRequest | None:
        with self._cond:
            self._cond.wait_for(lambda: self._find_disconnected(provider) is not None, timeout)
            return self._find_disconnected(provider)


# --------------------------------------------------------------------------- wire formats


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _count_tokens(text: str) -> int:
    return max(1, len(re.findall(r"\w+|[^\w\s]", text)))


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _prompt_tokens(body: object) -> int:
    if not isinstance(body, dict):
        return 1
    texts = [_content_text(body.get("system"))]
    messages = body.get("messages")
    if isinstance(messages, list):
        texts.extend(_content_text(m.get("content")) for m in messages if isinstance(m, dict))
    return _count_tokens(" ".join(texts))


def _split_text(text: str, pieces: int) -> list[str]:
    """Split ``text`` into exactly ``pieces`` consecutive parts (some empty if it is short)."""
    n = len(text)
    return [text[i * n // pieces : (i + 1) * n // pieces] for i in range(pieces)]


_OPENAI_TYPE_BY_CODE = {
    "insufficient_quota": "insufficient_quota",
    "rate_limit_exceeded": "requests",
}
_OPENAI_CODE_BY_STATUS = {
    401: "invalid_api_key",
    404: "model_not_found",
    429: "rate_limit_exceeded",
}
_OPENAI_MESSAGE_BY_CODE = {
    "context_length_exceeded": (
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 250000 tokens. Please reduce the length of the messages."
    ),
    "insufficient_quota": (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors."
    ),
    "invalid_api_key": "Incorrect API key provided: sk-fake. You can find your API key at "
    "https://platform.openai.com/account/api-keys.",
    "model_not_found": "The model `{model}` does not exist or you do not have access to it.",
    "rate_limit_exceeded": "Rate limit reached for requests. Please try again later.",
}
_OPENAI_MESSAGE_BY_STATUS = {
    400: "Invalid request.",
    403: "You are not allowed to access this resource.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
    529: "The server is overloaded or not ready yet.",
}
_ANTHROPIC_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ANTHROPIC_MESSAGE_BY_STATUS = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "model: {model}",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "This request would exceed the rate limit for your organization. Please try again "
    "later.",
    500: "Internal server error",
    529: "Overloaded",
}
_ANTHROPIC_MESSAGE_BY_CODE = {
    "context_length_exceeded": "prompt is too long: 250000 tokens > 200000 maximum",
}


def _openai_error(error: Error, model: str) -> dict[str, Any]:
    status = error.status
    code = error.code
    if code is None and error.error_type is None:
        code = _OPENAI_CODE_BY_STATUS.get(status)
    if error.error_type is not None:
        error_type = error.error_type
    elif code in _OPENAI_TYPE_BY_CODE:
        error_type = _OPENAI_TYPE_BY_CODE[code]
    else:
        error_type = "server_error" if status >= 500 else "invalid_request_error"
    message = error.message
    if message is None:
        template = _OPENAI_MESSAGE_BY_CODE.get(code or "") or _OPENAI_MESSAGE_BY_STATUS.get(
            status, f"The server returned HTTP {status}."
        )
        message = template.replace("{model}", model)
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _anthropic_error(error: Error, model: str, request_id: str) -> dict[str, Any]:
    status = error.status
    default_type = "api_error" if status >= 500 else "invalid_request_error"
    error_type = error.error_type or _ANTHROPIC_TYPE_BY_STATUS.get(status, default_type)
    message = error.message
    if message is None:
        template = _ANTHROPIC_MESSAGE_BY_CODE.get(
            error.code or ""
        ) or _ANTHROPIC_MESSAGE_BY_STATUS.get(status, f"HTTP {status}")
        message = template.replace("{model}", model)
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def _validation_error(family: Family, body: object) -> tuple[str, str | None, str | None] | None:
    """``(message, param, code)`` if a success would be impossible, as the real APIs reply."""
    if not isinstance(body, dict):
        if family == "openai":
            return "We could not parse the JSON body of your request.", None, None
        return "Request body must be a valid JSON object.", None, None
    required: tuple[str, ...] = ("model", "messages")
    if family == "anthropic":
        required += ("max_tokens",)
    for name in required:
        if name not in body:
            if family == "openai":
                return f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
            return f"{name}: Field required", None, None
    if not isinstance(body["model"], str) or not isinstance(body["messages"], list):
        return "Invalid type for 'model' or 'messages'.", None, "invalid_type"
    return None


def _header_dict(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated headers are joined with ", "."""
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _lower_headers(*mappings: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for mapping in mappings:
        for name, value in mapping.items():
            out[name.lower()] = value
    return out


@dataclass(eq=False)
class _Exchange:
    """Per-request context of the server side."""

    request: web.Request
    provider: str
    family: Family
    body: Any
    received_at: float
    handle: tuple[int, int]
    count: int
    request_id: str = field(default_factory=lambda: "req_" + secrets.token_hex(12))
    closed_by_fake: bool = False
    client_gone: bool = False

    @property
    def model(self) -> str:
        model = self.body.get("model") if isinstance(self.body, dict) else None
        return model if isinstance(model, str) else "fake-model"

    @property
    def wants_stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options") if isinstance(self.body, dict) else None
        return isinstance(options, dict) and options.get("include_usage") is True

    def default_text(self) -> str:
        return f"Hello from {self.provider}"

    def base_headers(self) -> dict[str, str]:
        if self.family == "openai":
            return {"x-request-id": self.request_id, "openai-version": "2020-10-01"}
        return {"request-id": self.request_id}

    def success_headers(self) -> dict[str, str]:
        remaining = str(max(0, _RATE_LIMIT - self.count))
        headers = self.base_headers()
        if self.family == "openai":
            elapsed_ms = int((time.monotonic() - self.received_at) * 1000)
            headers["openai-processing-ms"] = str(elapsed_ms)
            headers["x-ratelimit-limit-requests"] = str(_RATE_LIMIT)
            headers["x-ratelimit-remaining-requests"] = remaining
        else:
            headers["anthropic-ratelimit-requests-limit"] = str(_RATE_LIMIT)
            headers["anthropic-ratelimit-requests-remaining"] = remaining
        return headers


class _EventWriter:
    """The SSE events of one stream in a family's format."""

    def __init__(self, ex: _Exchange, text: str) -> None:
        self._ex = ex
        self._text = text
        self._created = int(time.time())
        self._id = ("chatcmpl-" if ex.family == "openai" else "msg_") + secrets.token_hex(12)

    def _openai_chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._ex.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self._ex.include_usage:
            chunk["usage"] = None
        return chunk

    @staticmethod
    def _data(obj: object) -> bytes:
        return b"data: " + _dumps(obj) + b"\n\n"

    @staticmethod
    def _event(name: str, obj: object) -> bytes:
        return b"event: " + name.encode() + b"\n" + _EventWriter._data(obj)

    def opening(self) -> Iterator[bytes]:
        if self._ex.family == "openai":
            yield self._data(self._openai_chunk({"role": "assistant", "content": ""}))
            return
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._ex.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": _prompt_tokens(self._ex.body), "output_tokens": 1},
        }
        yield self._event("message_start", {"type": "message_start", "message": message})
        block = {"type": "text", "text": ""}
        yield self._event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
        yield self._event("ping", {"type": "ping"})

    def content(self, piece: str) -> bytes:
        if self._ex.family == "openai":
            return self._data(self._openai_chunk({"content": piece}))
        delta = {"type": "text_delta", "text": piece}
        return self._event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )

    def malformed(self) -> bytes:
        if self._ex.family == "openai":
            return _MALFORMED_DATA
        return b"event: content_block_delta\n" + _MALFORMED_DATA

    def error(self, error_type: str, message: str) -> bytes:
        if self._ex.family == "openai":
            err = {"message": message, "type": error_type, "param": None, "code": None}
            return self._data({"error": err})
        return self._event(
            "error", {"type": "error", "error": {"type": error_type, "message": message}}
        )

    def closing(self, omit_done: bool) -> Iterator[bytes]:
        output_tokens = _count_tokens(self._text)
        if self._ex.family == "openai":
            yield self._data(self._openai_chunk({}, finish_reason="stop"))
            if self._ex.include_usage:
                chunk = self._openai_chunk({})
                chunk["choices"] = []
                chunk["usage"] = _openai_usage(self._ex.body, output_tokens)
                yield self._data(chunk)
            if not omit_done:
                yield b"data: [DONE]\n\n"
            return
        yield self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
        yield self._event("message_stop", {"type": "message_stop"})


def _openai_usage(body: object, completion_tokens: int) -> dict[str, int]:
    prompt_tokens = _prompt_tokens(body)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# --------------------------------------------------------------------------- server


class FakeUpstream:
    """The fake upstream server, to be driven from the event loop it was started on.

    The configuration methods (:meth:`script`, :meth:`set_default`, :meth:`reset`,
    :meth:`requests`) are synchronous and thread-safe. ``stream_interval`` is the delay between
    content events when :class:`Ok` answers a streaming request.
    """

    def __init__(self, *, stream_interval: float = 0.0, access_log: bool = False) -> None:
        _check_non_negative(self, stream_interval=stream_interval)
        self._stream_interval = stream_interval
        self._access_log = access_log
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self._stopping = False
        self._inflight: set[_Exchange] = set()

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

    def script(self, provider: str, *behaviours: Behaviour) -> None:
        """Append behaviours to ``provider``'s queue (one per future request)."""
        self._state.script(provider, behaviours)

    def set_default(self, provider: str, behaviour: Behaviour) -> None:
        """Set what ``provider`` does once its queue is empty."""
        self._state.set_default(provider, behaviour)

    def reset(self) -> None:
        """Forget queues, defaults and recorded requests."""
        self._state.reset()

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
        if path == _CONTROL_PREFIX or path.startswith(_CONTROL_PREFIX + "/"):
            return await self._control(request)
        received_at = time.monotonic()
        family: Family | None = None
        provider = path.lstrip("/").split("/", 1)[0]
        if request.method == "POST":
            for candidate, pattern in (("openai", _OPENAI_PATH), ("anthropic", _ANTHROPIC_PATH)):
                if match := pattern.fullmatch(path):
                    family = cast(Family, candidate)
                    provider = match["provider"]
        body = await request.read()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            provider=provider,
            family=family,
            method=request.method,
            path=path,
            query=request.query_string,
            headers=_header_dict(request.headers.items()),
            body=body,
            json=parsed,
            received_at=received_at,
        )
        handle = self._state.record(record)
        if family is None:
            self._state.update(handle, completed=True)
            message = f"Invalid URL ({request.method} {path})"
            error = {"message": message, "type": "invalid_request_error", "param": None}
            return web.Response(
                status=404,
                body=_dumps({"error": {**error, "code": "unknown_url"}}),
                content_type=_JSON_CT,
            )
        behaviour, count = self._state.next_behaviour(provider)
        ex = _Exchange(request, provider, family, parsed, received_at, handle, count)
        self._inflight.add(ex)
        try:
            return await self._respond(ex, behaviour)
        except asyncio.CancelledError:
            # handler_cancellation=True: aiohttp cancels us when the connection is lost.
            self._client_gone(ex)
            raise
        finally:
            self._inflight.discard(ex)

    def _client_gone(self, ex: _Exchange) -> None:
        if not (ex.closed_by_fake or ex.client_gone or self._stopping):
            ex.client_gone = True
            self._state.update(ex.handle, disconnected_at=time.monotonic(), completed=False)

    async def _finish(
        self, ex: _Exchange, response: web.StreamResponse, tail: Sequence[bytes] = ()
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

    async def _pause(self, ex: _Exchange, seconds: float) -> bool:
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

    def _close(self, ex: _Exchange, reset: bool = False) -> None:
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

    async def _send(self, ex: _Exchange, response: web.StreamResponse) -> web.StreamResponse:
        """Send a complete response now, so that ``completed`` can be recorded truthfully."""
        try:
            await response.prepare(ex.request)
        except ConnectionError:
            self._client_gone(ex)
            return response
        await self._finish(ex, response)
        return response

    async def _respond(self, ex: _Exchange, behaviour: Behaviour) -> web.StreamResponse:
        if isinstance(behaviour, Ok):
            if behaviour.delay and await self._pause(ex, behaviour.delay):
                return web.Response()
            if (problem := _validation_error(ex.family, ex.body)) is not None:
                message, param, code = problem
                error = Error(400, code=code, message=message)
                return await self._send(ex, self._error_from(ex, error, param))
            if ex.wants_stream:
                spec = Stream(
                    text=behaviour.text, interval=self._stream_interval, headers=behaviour.headers
                )
                return await self._stream(ex, spec)
            return await self._send(ex, self._ok_response(ex, behaviour))
        if isinstance(behaviour, Error):
            if behaviour.delay and await self._pause(ex, behaviour.delay):
                return web.Response()
            return await self._send(ex, self._error_from(ex, behaviour))
        if isinstance(behaviour, Raw):
            headers = _lower_headers({"content-type": behaviour.content_type}, behaviour.headers)
            raw = web.Response(status=behaviour.status, body=behaviour.body, headers=headers)
            return await self._send(ex, raw)
        if isinstance(behaviour, Hang):
            if not await self._pause(ex, behaviour.seconds):
                self._close(ex)
            return web.Response()
        if isinstance(behaviour, Drop):
            self._close(ex, reset=behaviour.reset)
            return web.Response()
        return await self._stream(ex, behaviour)

    def _ok_response(self, ex: _Exchange, ok: Ok) -> web.Response:
        text = ok.text if ok.text is not None else ex.default_text()
        completion_tokens = _count_tokens(text)
        body: dict[str, Any]
        if ex.family == "openai":
            body = {
                "id": "chatcmpl-" + secrets.token_hex(12),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": ex.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _openai_usage(ex.body, completion_tokens),
                "system_fingerprint": "fp_fake",
            }
        else:
            body = {
                "id": "msg_" + secrets.token_hex(12),
                "type": "message",
                "role": "assistant",
                "model": ex.model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": _prompt_tokens(ex.body),
                    "output_tokens": completion_tokens,
                },
            }
        headers = _lower_headers(ex.success_headers(), {"content-type": _JSON_CT}, ok.headers)
        return web.Response(status=200, body=_dumps(body), headers=headers)

    def _error_from(self, ex: _Exchange, error: Error, param: str | None = None) -> web.Response:
        body: dict[str, Any]
        if ex.family == "openai":
            body = _openai_error(error, ex.model)
            body["error"]["param"] = param
        else:
            body = _anthropic_error(error, ex.model, ex.request_id)
        headers = _lower_headers(ex.base_headers(), {"content-type": _JSON_CT}, error.headers)
        return web.Response(status=error.status, body=_dumps(body), headers=headers)

    async def _stream(self, ex: _Exchange, spec: Stream) -> web.StreamResponse:
        text = spec.text if spec.text is not None else ex.default_text()
        events = _EventWriter(ex, text)
        pieces = _split_text(text, spec.chunks)
        headers = _lower_headers(
            ex.success_headers(),
            {"content-type": _SSE_CT, "cache-control": "no-cache"},
            spec.headers,
        )
        response = web.StreamResponse(status=200, headers=headers)
        response.enable_chunked_encoding()
        try:
            await response.prepare(ex.request)
            if spec.first_event_delay and await self._pause(ex, spec.first_event_delay):
                return response
            if spec.error_at != 0:
                for event in events.opening():
                    await response.write(event)
            tail: list[bytes] = []
            for k in range(len(pieces) + 1):
                if spec.malformed_at == k:
                    await response.write(events.malformed())
                if spec.error_at == k:
                    tail.append(events.error(spec.error_type, spec.error_message))
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

    # ----- control API

    async def _control(self, request: web.Request) -> web.StreamResponse:
        action = request.path[len(_CONTROL_PREFIX) :].strip("/")
        try:
            if request.method == "POST" and action == "reset":
                self.reset()
                return web.json_response({"ok": True})
            if request.method == "GET" and action == "requests":
                provider = request.query.get("provider")
                return web.json_response([r.to_dict() for r in self.requests(provider)])
            if request.method == "POST" and action in ("script", "default"):
                data = await request.json()
                if not isinstance(data, dict) or not isinstance(data.get("provider"), str):
                    raise ValueError('expected a JSON object with a "provider" string')
                if action == "script":
                    items = data.get("behaviours")
                    if not isinstance(items, list):
                        raise ValueError('"behaviours" must be a list')
                    self.script(data["provider"], *(behaviour_from_dict(b) for b in items))
                else:
                    self.set_default(data["provider"], behaviour_from_dict(data.get("behaviour")))
                return web.json_response({"ok": True})
        except ValueError as exc:  # includes json.JSONDecodeError
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(
            {"error": f"unknown control endpoint {request.method} {request.path}"}, status=404
        )


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

    def script(self, provider: str, *behaviours: Behaviour) -> None:
        """Append behaviours to ``provider``'s queue."""
        self.upstream.script(provider, *behaviours)

    def set_default(self, provider: str, behaviour: Behaviour) -> None:
        """Set ``provider``'s behaviour for when its queue is empty."""
        self.upstream.set_default(provider, behaviour)

    def reset(self) -> None:
        """Forget queues, defaults and recorded requests."""
        self.upstream.reset()

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, oldest first."""
        return self.upstream.requests(provider)

    def wait_for_disconnect(self, provider: str, timeout: float = 2.0) -> RecordedRequest | None:
        """Block until a request of ``provider`` has seen its client go away; return the latest
        such request, or ``None`` after ``timeout`` seconds."""
        return self.upstream.wait_for_disconnect_blocking(provider, timeout)


# --------------------------------------------------------------------------- CLI


def _parse_fail(value: str) -> tuple[str, int]:
    name, sep, status = value.partition("=")
    if not sep or not name or not status.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=STATUS, got {value!r}")
    code = int(status)
    if not 100 <= code <= 599:
        raise argparse.ArgumentTypeError(f"bad HTTP status in {value!r}")
    return name, code


async def _serve(args: argparse.Namespace) -> None:
    upstream = FakeUpstream(stream_interval=args.stream_interval, access_log=args.access_log)
    failing: list[tuple[str, int]] = args.fail
    for name, status in failing:
        upstream.set_default(name, error_for_status(status))
    await upstream.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. on Windows
            loop.add_signal_handler(sig, stop.set)
    fails = ", ".join(f"{name}={status}" for name, status in failing) or "none"
    print(
        f"fake upstream listening on {upstream.url} (providers: any path prefix; failing: {fails})",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await upstream.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: serve until Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--fail",
        type=_parse_fail,
        action="append",
        default=[],
        metavar="NAME=STATUS",
        help="make provider NAME always answer STATUS (429 comes with retry-after: 30)",
    )
    parser.add_argument(
        "--stream-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay between streamed content events",
    )
    parser.add_argument("--access-log", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
