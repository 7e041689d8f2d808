"""What every API family provides: request rules, error shapes and stream semantics."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from llm_api_router.config import Family, ProviderConfig
from llm_api_router.errors import ClientRequestError
from llm_api_router.sse import SSEEvent

__all__ = [
    "ApiFamily",
    "ChatRequest",
    "StreamTracker",
    "UpstreamErrorInfo",
    "error_info_of",
    "loads_object",
    "wrong_type",
]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What routing needs to know about a client's request; ``body`` is forwarded as is."""

    body: bytes
    data: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    #: At most one choice can come back (OpenAI ``n`` absent or 1).
    single_choice: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamErrorInfo:
    """The parts of an upstream error body that routing decisions look at."""

    type: str | None
    code: str | None
    message: str


class StreamTracker(abc.ABC):
    """Follows one relayed stream to tell a natural end from a cut (sans-IO)."""

    #: The upstream reached its natural end (OpenAI: finish_reason [+ usage];
    #: Anthropic: message_stop).
    finished: bool
    #: Nothing more will be relayed: the terminal marker itself was seen.
    terminal: bool

    @abc.abstractmethod
    def observe(self, event: SSEEvent) -> UpstreamErrorInfo | None:
        """Record one event; return the error it carries, if it is an error event."""

    @abc.abstractmethod
    def completion(self) -> bytes:
        """Bytes that complete a naturally finished stream whose terminal marker is missing."""


class ApiFamily(abc.ABC):
    """One API family (OpenAI or Anthropic): pure data and functions, no I/O."""

    name: ClassVar[Family]
    upstream_path: ClassVar[str]
    #: Upstream statuses that mean "rate limited / overloaded: cool down, next provider".
    rate_limit_statuses: ClassVar[frozenset[int]]
    #: Client request headers never forwarded for this family (lower-case).
    private_request_headers: ClassVar[frozenset[str]]
    #: Fields whose presence and type are checked before anything is forwarded.
    required_fields: ClassVar[tuple[str, ...]]
    #: Request headers sent upstream unless the client sends its own value.
    default_headers: ClassVar[Mapping[str, str]] = {}

    # -- requests -------------------------------------------------------------------------

    def parse_request(self, body: bytes) -> ChatRequest:
        """Validate the client's body just enough to route it; raise ClientRequestError."""
        if not body.strip():
            raise ClientRequestError(400, "The request body is empty; send a JSON object.")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ClientRequestError(
                400, f"The request body is not valid JSON ({exc.msg} at position {exc.pos})."
            ) from None
        if not isinstance(data, dict):
            raise ClientRequestError(
                400, f"The request body must be a JSON object, not {_json_type(data)}."
            )
        for field in self.required_fields:
            if field not in data:
                raise ClientRequestError(
                    400, f"Missing required parameter: '{field}'.", param=field
                )
        model = data["model"]
        if not isinstance(model, str) or not model:
            raise wrong_type("model", "a non-empty string", model)
        if not isinstance(data["messages"], list):
            raise wrong_type("messages", "an array", data["messages"])
        stream = data.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise wrong_type("stream", "a boolean", stream)
        self.check_fields(data)
        options = data.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise wrong_type("stream_options", "an object", options)
        include_usage = bool(options and options.get("include_usage") is True)
        return ChatRequest(
            body=body,
            data=data,
            model=model,
            stream=bool(stream),
            include_usage=include_usage,
            single_choice=data.get("n") in (None, 1),
        )

    def check_fields(self, data: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Family-specific field checks beyond the common ones."""

    @abc.abstractmethod
    def auth_headers(self, provider: ProviderConfig) -> dict[str, str]:
        """Headers that authenticate the router to ``provider`` (computed once per provider)."""

    # -- upstream outcomes ----------------------------------------------------------------

    def error_info(self, body: bytes) -> UpstreamErrorInfo | None:
        """Parse an upstream error body, or None if it has no ``error`` object.

        Both families nest it the same way: ``{"error": {"type", "message"[, "code"]}}``.
        """
        data = loads_object(body)
        error = data.get("error") if data else None
        return error_info_of(error) if isinstance(error, dict) else None

    @abc.abstractmethod
    def is_context_length_error(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        """A 400 saying the prompt is too long for this provider's model."""

    def is_quota_error(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        """A rate-limit status that really means "out of credit" (a long cooldown)."""
        return False

    def stream_error_status(self, info: UpstreamErrorInfo) -> int:
        """The HTTP status an error event right after a 200 stands for."""
        return 500

    @abc.abstractmethod
    def new_stream_tracker(self, request: ChatRequest) -> StreamTracker:
        """A tracker for one relayed stream of ``request``."""

    # -- our own errors, rendered natively -----------------------------------------------

    @abc.abstractmethod
    def error_body(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> bytes:
        """An error response body in this family's format."""

    @abc.abstractmethod
    def stream_error_event(self, status: int, message: str, *, code: str | None = None) -> bytes:
        """An SSE error event in this family's format, ending a stream we cannot finish."""


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return "an object"


def wrong_type(field: str, expected: str, value: Any) -> ClientRequestError:
    """A 400 for a field of the wrong JSON type (shared by the families)."""
    return ClientRequestError(
        400,
        f"Invalid type for '{field}': expected {expected}, got {_json_type(value)}.",
        param=field,
    )


def error_info_of(error: Any) -> UpstreamErrorInfo:
    """The routing-relevant parts of an ``error`` value (wrong types read as absent)."""
    if not isinstance(error, dict):
        return UpstreamErrorInfo(None, None, "")

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return UpstreamErrorInfo(
        type=text(error.get("type")),
        code=text(error.get("code")),
        message=text(error.get("message")) or "",
    )


def loads_object(body: bytes) -> dict[str, Any] | None:
    """Parse a JSON object, or None for anything else (never raises)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
