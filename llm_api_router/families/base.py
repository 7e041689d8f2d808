"""What every API family provides: request rules, error shapes and stream semantics."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from llm_api_router.config import Family, ProviderConfig
from llm_api_router.errors import ClientRequestError
from llm_api_router.families.multipart import form_field
from llm_api_router.families.operations import Operation, OperationTable, StreamFormat
from llm_api_router.families.owned import OwnedIds
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
    """What routing needs to know about a client's request; ``body`` is forwarded as is.

    Every operation's request has this shape (the name is the first operation's): ``model``
    is None where the operation is not routed by model or the client sent none.
    """

    body: bytes
    data: dict[str, Any] | None
    model: str | None
    stream: bool
    include_usage: bool
    #: At most one choice can come back (OpenAI ``n`` absent or 1).
    single_choice: bool = True
    #: What the path is; None: the family's chat operation.
    operation: Operation | None = None
    method: str = "POST"
    #: The upstream path below the family's prefix, e.g. ``chat/completions``.
    path: str = ""
    #: The client's content type, forwarded with the body.
    content_type: str = "application/json"
    #: The router's base URL as the client reached it (for rewritten upstream URLs).
    origin: str = ""


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
    #: The event that holds the whole answer (Responses: the terminal response), if any.
    final: bytes | None = None

    @abc.abstractmethod
    def observe(self, event: SSEEvent) -> UpstreamErrorInfo | None:
        """Record one event; return the error it carries, if it is an error event."""

    @abc.abstractmethod
    def completion(self) -> bytes:
        """Bytes that complete a naturally finished stream whose terminal marker is missing."""

    def is_preamble(self, event: SSEEvent) -> bool:
        """An event that carries no output yet (held back before the commit; SPEC 9)."""
        return False

    @abc.abstractmethod
    def failure(self, status: int, message: str, code: str) -> bytes:
        """The native event that ends a committed stream the router cannot finish."""

    def after_error(self, info: UpstreamErrorInfo) -> bytes:
        """What follows a relayed upstream error event after the commit (if anything)."""
        return b""


class ApiFamily(abc.ABC):
    """One API family (OpenAI or Anthropic): pure data and functions, no I/O."""

    name: ClassVar[Family]
    #: Upstream statuses that mean "rate limited / overloaded: cool down, next provider".
    rate_limit_statuses: ClassVar[frozenset[int]]
    #: Client request headers never forwarded for this family (lower-case).
    private_request_headers: ClassVar[frozenset[str]]
    #: The chat operation's required fields (documented in the OpenAPI schema).
    required_fields: ClassVar[tuple[str, ...]]
    #: Request headers sent upstream unless the client sends its own value.
    default_headers: ClassVar[Mapping[str, str]] = {}

    # -- requests -------------------------------------------------------------------------

    #: This family's operations (SPEC section 9), first match wins.
    operations: ClassVar[OperationTable]
    #: How ids of account-owned objects look in this family (SPEC section 10).
    owned: ClassVar[OwnedIds]
    #: The path of the chat operation below the family, as the seed served it.
    chat_path: ClassVar[str]
    #: Upstream path prefix below ``base_url`` for every operation (Anthropic: ``/v1``).
    upstream_prefix: ClassVar[str] = ""

    def operation_path(self, client_path: str) -> str:
        """The path below the family for a client path below ``/<family>/`` (``v1/`` optional)."""
        path = client_path[3:] if client_path.startswith("v1/") else client_path
        return "" if client_path == "v1" else path

    def upstream_url(self, base_url: str, path: str, query: str) -> str:
        return f"{base_url}{self.upstream_prefix}/{path}{query}"

    def parse_request(
        self,
        body: bytes,
        operation: Operation | None = None,
        *,
        method: str = "POST",
        path: str | None = None,
        content_type: str | None = None,
        origin: str = "",
    ) -> ChatRequest:
        """Read what routing needs from a client's request; raise ClientRequestError.

        Generation operations with a JSON body are validated just enough to route them
        (``model``, ``stream`` and the operation's required fields); other bodies are
        forwarded as received.
        """
        op = operation or self.operations.find("POST", self.chat_path)
        media = (content_type or "application/json").split(";", 1)[0].strip().lower()
        if path is None:
            path = self.chat_path
        if not op.generation:
            return ChatRequest(
                body, None, None, False, False, True, op, method, path, content_type or "", origin
            )
        if media == "multipart/form-data" and content_type and op.accepts_form:
            model = form_field(body, content_type, "model")
            stream = form_field(body, content_type, "stream") == "true"
            return ChatRequest(
                body,
                None,
                model or None,
                stream,
                False,
                True,
                op,
                method,
                path,
                content_type,
                origin,
            )
        data = self._json_object(body)
        for name in op.required:
            if name not in data:
                raise ClientRequestError(400, f"Missing required parameter: '{name}'.", param=name)
        model = data.get("model")
        if ("model" in data or model is not None) and (not isinstance(model, str) or not model):
            raise wrong_type("model", "a non-empty string", model)
        if "messages" in op.required and not isinstance(data["messages"], list):
            raise wrong_type("messages", "an array", data["messages"])
        stream = data.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise wrong_type("stream", "a boolean", stream)
        if op.stream is StreamFormat.MESSAGES or "max_tokens" in op.required:
            self.check_fields(data)
        options = data.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise wrong_type("stream_options", "an object", options)
        include_usage = bool(options and options.get("include_usage") is True)
        return ChatRequest(
            body=body,
            data=data,
            model=model,
            stream=bool(stream) and op.stream is not None,
            include_usage=include_usage,
            single_choice=data.get("n") in (None, 1),
            operation=op,
            method=method,
            path=path,
            content_type=content_type or "application/json",
            origin=origin,
        )

    @staticmethod
    def _json_object(body: bytes) -> dict[str, Any]:
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
        return data

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

    def is_not_found(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        """The upstream does not know an object the request refers to (another account's)."""
        return status == 404

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
