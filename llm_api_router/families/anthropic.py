"""The Anthropic Messages family."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from llm_api_router.config import Family, ProviderConfig
from llm_api_router.families.base import (
    ApiFamily,
    ChatRequest,
    StreamTracker,
    UpstreamErrorInfo,
    error_info_of,
    loads_object,
    wrong_type,
)
from llm_api_router.families.operations import (
    LimitClass,
    Operation,
    OperationTable,
    StreamFormat,
)
from llm_api_router.families.owned import OwnedIds
from llm_api_router.sse import SSEEvent

__all__ = ["DEFAULT_ANTHROPIC_VERSION", "AnthropicFamily"]

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"

_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
}
_STATUS_OF_TYPE: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


_POST = frozenset({"POST"})
_GET = frozenset({"GET"})

#: Every path of the Anthropic API the router knows, first match wins (SPEC section 9).
OPERATIONS = OperationTable(
    (
        Operation(
            "messages",
            "messages",
            _POST,
            generation=True,
            required=("model", "messages", "max_tokens"),
            stream=StreamFormat.MESSAGES,
            limit_class=LimitClass.GENERATE,
        ),
        Operation(
            "count_tokens",
            "messages/count_tokens",
            _POST,
            generation=True,
            required=("model", "messages"),
            limit_class=LimitClass.COUNT_TOKENS,
        ),
        Operation(
            "batches",
            "messages/batches(/.*)?",
            limit_class=LimitClass.BATCHES,
            rewrites_urls=True,
            owns=True,
            refers=True,
        ),
        Operation("models", "models", _GET, model_list=True),
        Operation("model", "models/.+", _GET, model_list=True),
        Operation("files", "files(/.*)?", limit_class=LimitClass.FILES, owns=True, refers=True),
    ),
    Operation("other", ".*", owns=True, refers=True),
)
#: Ids of objects an Anthropic workspace owns: message batches and files.
OWNED_IDS = OwnedIds(("msgbatch_", "file_"))
_PREAMBLE_EVENTS = (b"event: message_start", b"event: ping")


class AnthropicFamily(ApiFamily):
    """``/anthropic/X`` and ``/anthropic/v1/X`` -> ``{base_url}/v1/X``.

    The seed's ``/anthropic/chat/completions`` stays an alias of ``/anthropic/v1/messages``.
    """

    name: ClassVar[Family] = "anthropic"
    operations: ClassVar[OperationTable] = OPERATIONS
    owned: ClassVar[OwnedIds] = OWNED_IDS
    chat_path: ClassVar[str] = "messages"
    upstream_prefix: ClassVar[str] = "/v1"
    rate_limit_statuses: ClassVar[frozenset[int]] = frozenset({429, 529})
    private_request_headers: ClassVar[frozenset[str]] = frozenset()
    required_fields: ClassVar[tuple[str, ...]] = ("model", "messages", "max_tokens")
    default_headers: ClassVar[Mapping[str, str]] = {"anthropic-version": DEFAULT_ANTHROPIC_VERSION}

    def operation_path(self, client_path: str) -> str:
        if client_path == "chat/completions":
            return "messages"
        return super().operation_path(client_path)

    def check_fields(self, data: dict[str, Any]) -> None:
        max_tokens = data["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise wrong_type("max_tokens", "a positive integer", max_tokens)

    def auth_headers(self, provider: ProviderConfig) -> dict[str, str]:
        return {"x-api-key": provider.api_key.get_secret_value()}

    def is_context_length_error(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        return (
            status == 400
            and info is not None
            and info.type == "invalid_request_error"
            and "prompt is too long" in info.message.lower()
        )

    def is_quota_error(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        # Anthropic reports an empty balance as a 400 "credit balance is too low".
        return status == 400 and info is not None and "credit balance" in info.message.lower()

    def stream_error_status(self, info: UpstreamErrorInfo) -> int:
        return _STATUS_OF_TYPE.get(info.type or "", 500)

    def new_stream_tracker(self, request: ChatRequest) -> StreamTracker:
        return _AnthropicStreamTracker()

    def error_body(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> bytes:
        return orjson.dumps({"type": "error", "error": _error_object(status, message)})

    def stream_error_event(self, status: int, message: str, *, code: str | None = None) -> bytes:
        return _stream_error_event(status, message)


def _stream_error_event(status: int, message: str) -> bytes:
    payload = orjson.dumps({"type": "error", "error": _error_object(status, message)})
    return b"event: error\ndata: " + payload + b"\n\n"


def _error_object(status: int, message: str) -> dict[str, str]:
    error_type = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": error_type, "message": message}


class _AnthropicStreamTracker(StreamTracker):
    """Natural end: ``message_stop``."""

    __slots__ = ("finished", "terminal")

    def __init__(self) -> None:
        self.finished = False
        self.terminal = False

    def observe(self, event: SSEEvent) -> UpstreamErrorInfo | None:
        raw = event.raw
        if raw.startswith(b"event: ") and b"error" not in raw and b"message_stop" not in raw:
            return None  # a named event that is neither the end nor an error: nothing to learn
        name = event.event
        if name == "message_stop":
            self.finished = self.terminal = True
            return None
        if name == "error" or (name is None and '"type":"error"' in event.data.replace(" ", "")):
            data = loads_object(event.data.encode())
            error = data.get("error") if data else None
            return (
                error_info_of(error)
                if isinstance(error, dict)
                else UpstreamErrorInfo(None, None, "")
            )
        return None

    def completion(self) -> bytes:
        return b""

    def is_preamble(self, event: SSEEvent) -> bool:
        return event.raw.startswith(_PREAMBLE_EVENTS)

    def failure(self, status: int, message: str, code: str) -> bytes:
        return _stream_error_event(status, message)
