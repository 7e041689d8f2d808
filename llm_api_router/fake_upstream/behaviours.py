"""What a fake provider does with its next request: frozen, serialisable behaviours."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "Behaviour",
    "Drop",
    "Error",
    "Hang",
    "Ok",
    "Raw",
    "Stream",
    "behaviour_from_dict",
    "behaviour_to_dict",
    "context_too_long",
    "error_for_status",
    "insufficient_quota",
    "overloaded",
    "rate_limited",
    "response_failed",
]

JSON_CT = "application/json"

ResponsesFailure: TypeAlias = Literal["error_and_failed", "failed", "error"]


def check_non_negative(owner: object, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and (math.isnan(value) or value < 0):
            raise ValueError(f"{type(owner).__name__}.{name} must be >= 0, got {value!r}")


def _check_status(status: int) -> None:
    if not 100 <= status <= 599:
        raise ValueError(f"HTTP status must be in 100..599, got {status!r}")


@dataclass(frozen=True)
class Ok:
    """A faithful success response of whatever endpoint was called.

    ``text`` (generated text of chat, messages, Responses, completions, transcriptions)
    defaults to ``"Hello from {provider}"``. ``delay`` is waited before anything is sent.
    A streaming request (``"stream": true``) is answered like ``Stream(text=text,
    headers=headers)`` with the server's ``stream_interval``. A request the real API would
    reject (missing ``model``, unknown ``previous_response_id``, a file of another account,
    ...) gets the family's error instead, as the real APIs do.
    """

    text: str | None = None
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_non_negative(self, delay=self.delay)


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
        check_non_negative(self, delay=self.delay)


@dataclass(frozen=True)
class Raw:
    """Any status and body, sent verbatim (e.g. a 200 whose body is not JSON)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = JSON_CT

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
        check_non_negative(self, seconds=self.seconds)


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the TCP connection without sending a single byte.

    With ``reset=True`` the socket is closed with ``SO_LINGER`` 0 so the client gets a TCP RST
    (``ECONNRESET``) instead of an orderly FIN.
    """

    reset: bool = False


@dataclass(frozen=True)
class Stream:
    """A server-sent-events stream in the format of the endpoint called (always streamed,
    whatever ``stream`` the request asked for): Chat Completions chunks, Anthropic Messages
    events, Responses events (``event:`` lines, ``sequence_number``) or legacy Completions
    chunks; any other endpoint gets its family's chat format.

    Positions ``k`` below count *content* events only (OpenAI content-delta chunks, Anthropic
    ``content_block_delta``, Responses ``response.output_text.delta``) and mean "after ``k``
    content events" (``k == 0``: after the opening events, i.e. role chunk / ``message_start``
    .. ``ping`` / ``response.created`` + ``response.in_progress``):

    * ``text`` (default ``"Hello from {provider}"``) is split into ``chunks`` content events,
      ``interval`` seconds apart; ``first_event_delay`` is waited after the 200 headers.
    * ``malformed_at``: insert an event whose data is ``{this is not json`` (named like a
      content event where the format names events), then go on normally.
    * ``error_at``: send the in-band error and end the response cleanly. Chat and Anthropic:
      the family's error event; ``error_at=0`` sends it right after the headers, before any
      other event. Responses: an ``error`` event and/or a ``response.failed`` event (see
      ``responses_failure``) whose ``code`` is ``error_code`` (default derived from
      ``error_type``: rate limits give ``rate_limit_exceeded``, the rest ``server_error``);
      a Responses stream always opens with ``response.created`` / ``response.in_progress``,
      so ``error_at=0`` comes right after them, before the first output item.
    * ``cut_after``: close the connection abruptly (no final events, no terminating chunk).
    * ``stall_after``: send nothing more, keep the connection open until the client leaves.
    * ``omit_done``: OpenAI chat / completions only, leave out ``data: [DONE]``.
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
    error_code: str | None = None
    responses_failure: ResponsesFailure = "error_and_failed"
    omit_done: bool = False
    keep_open: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise ValueError(f"Stream.chunks must be >= 1, got {self.chunks!r}")
        if self.responses_failure not in ("error_and_failed", "failed", "error"):
            raise ValueError(f"bad Stream.responses_failure {self.responses_failure!r}")
        check_non_negative(
            self,
            interval=self.interval,
            first_event_delay=self.first_event_delay,
            cut_after=self.cut_after,
            stall_after=self.stall_after,
            malformed_at=self.malformed_at,
            error_at=self.error_at,
        )


Behaviour: TypeAlias = Ok | Error | Raw | Hang | Drop | Stream

KINDS: dict[str, type[Behaviour]] = {
    "ok": Ok,
    "error": Error,
    "raw": Raw,
    "hang": Hang,
    "drop": Drop,
    "stream": Stream,
}


def format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def rate_limited(retry_after: float | None = None, retry_after_ms: float | None = None) -> Error:
    """A 429 rate-limit error, with ``retry-after`` / ``retry-after-ms`` headers if given."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = format_seconds(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = format_seconds(retry_after_ms)
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


_FAILURE_MESSAGES = {
    "rate_limit_exceeded": "Rate limit reached for requests in organization org-fake on "
    "tokens per min (TPM): Limit 30000, Used 30000, Requested 120. Please try again in 1.5s.",
    "server_error": "An error occurred while processing your request. You can retry your "
    "request, or contact us through our help center if the error persists.",
    "insufficient_quota": "You exceeded your current quota, please check your plan and "
    "billing details.",
}


def response_failed(
    at: int = 0,
    code: str = "server_error",
    message: str | None = None,
    *,
    events: ResponsesFailure = "error_and_failed",
    chunks: int = 5,
    text: str | None = None,
) -> Stream:
    """A Responses stream that fails in-band after ``at`` ``output_text.delta`` events.

    ``at=0``: right after ``response.created`` / ``response.in_progress``, before any output.
    ``events`` chooses what the failure looks like on the wire: an ``error`` event followed by
    ``response.failed`` (the default), or only one of them. ``code`` is
    ``response.error.code`` (e.g. ``rate_limit_exceeded``, ``server_error``).
    """
    return Stream(
        text=text,
        chunks=chunks,
        error_at=at,
        error_code=code,
        error_message=message if message is not None else _FAILURE_MESSAGES.get(code, code),
        responses_failure=events,
    )


def behaviour_from_dict(data: object) -> Behaviour:
    """Build a behaviour from ``{"kind": "error", "status": 429, ...}``.

    ``kind`` is one of ok/error/raw/hang/drop/stream; other keys are the dataclass fields
    (``Raw.body`` may be a string, encoded as UTF-8). Raises ``ValueError`` on bad input.
    """
    if not isinstance(data, Mapping):
        raise ValueError("a behaviour must be a JSON object")
    kwargs = dict(data)
    kind = kwargs.pop("kind", None)
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise ValueError(f"behaviour kind must be one of {sorted(KINDS)}, got {kind!r}")
    cls = KINDS[kind.lower()]
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
    kind = next(name for name, cls in KINDS.items() if isinstance(behaviour, cls))
    out: dict[str, Any] = {"kind": kind}
    for f in dataclasses.fields(behaviour):
        value = getattr(behaviour, f.name)
        if isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        out[f.name] = value
    return out


def is_behaviour(value: object) -> bool:
    return isinstance(value, tuple(KINDS.values()))
