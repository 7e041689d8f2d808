"""The OpenAI Chat Completions family."""

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
)
from llm_api_router.sse import SSEEvent

__all__ = ["OpenAIFamily"]

_DONE = b"data: [DONE]\n\n"

# (type, code) for the errors the router itself produces, by status.
_ERROR_KINDS: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_content_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "no_provider"),
    504: ("server_error", "upstream_timeout"),
}


class OpenAIFamily(ApiFamily):
    """``POST /openai/chat/completions`` -> ``{base_url}/chat/completions``."""

    name: ClassVar[Family] = "openai"
    upstream_path: ClassVar[str] = "/chat/completions"
    rate_limit_statuses: ClassVar[frozenset[int]] = frozenset({429})
    private_request_headers: ClassVar[frozenset[str]] = frozenset(
        {"openai-organization", "openai-project"}
    )
    required_fields: ClassVar[tuple[str, ...]] = ("model", "messages")

    def auth_headers(self, provider: ProviderConfig) -> dict[str, str]:
        headers = {"authorization": f"Bearer {provider.api_key.get_secret_value()}"}
        if provider.organization:
            headers["openai-organization"] = provider.organization
        if provider.project:
            headers["openai-project"] = provider.project
        return headers

    def is_context_length_error(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        if status != 400 or info is None:
            return False
        return info.code == "context_length_exceeded" or (
            "maximum context length" in info.message.lower()
        )

    def is_quota_error(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        return status == 429 and info is not None and "insufficient_quota" in (info.code, info.type)

    def stream_error_status(self, info: UpstreamErrorInfo) -> int:
        kind = f"{info.type} {info.code}"
        if "insufficient_quota" in kind or "rate_limit" in kind:
            return 429
        if "invalid_request" in kind:
            return 400
        return 500

    def new_stream_tracker(self, request: ChatRequest) -> StreamTracker:
        return _OpenAIStreamTracker(request.include_usage, request.single_choice)

    def error_body(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> bytes:
        return orjson.dumps({"error": _error_object(status, message, code, param)})

    def stream_error_event(self, status: int, message: str, *, code: str | None = None) -> bytes:
        return (
            b"data: "
            + orjson.dumps({"error": _error_object(status, message, code, None)})
            + (b"\n\n")
        )


def _error_object(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
    error_type, default_code = _ERROR_KINDS.get(
        status, ("invalid_request_error" if status < 500 else "server_error", None)
    )
    return {"message": message, "type": error_type, "param": param, "code": code or default_code}


class _OpenAIStreamTracker(StreamTracker):
    """Natural end: every choice seen has a finish_reason (and usage came, if asked for)."""

    __slots__ = (
        "_done",
        "_include_usage",
        "_seen",
        "_single_choice",
        "_usage_seen",
        "finished",
        "terminal",
    )

    def __init__(self, include_usage: bool, single_choice: bool) -> None:
        self._include_usage = include_usage
        self._single_choice = single_choice
        self._seen: set[int] = set()
        self._done: set[int] = set()
        self._usage_seen = False
        self.finished = False
        self.terminal = False

    def observe(self, event: SSEEvent) -> UpstreamErrorInfo | None:
        raw = event.raw
        if (
            self._single_choice
            and b'"finish_reason":null' in raw
            and b'"error"' not in raw
            and b"[DONE]" not in raw
        ):
            # A plain content chunk of the only choice: nothing to learn from parsing it.
            # (Checked on the wire bytes: what is absent there is absent from the data.)
            self._seen.add(0)
            return None
        data = event.data
        if data.startswith("[DONE]"):
            self.finished = self.terminal = True
            return None
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None  # relayed as is; never kills the stream
        if not isinstance(chunk, dict):
            return None
        error = chunk.get("error")
        if error:
            return (
                error_info_of(error)
                if isinstance(error, dict)
                else UpstreamErrorInfo(None, None, "")
            )
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    index = choice.get("index", 0)
                    self._seen.add(index)
                    if choice.get("finish_reason"):
                        self._done.add(index)
            if not choices and chunk.get("usage"):
                self._usage_seen = True
        self.finished = (
            bool(self._seen)
            and self._done >= self._seen
            and (self._usage_seen or not self._include_usage)
        )
        return None

    def completion(self) -> bytes:
        return _DONE
