"""The OpenAI Chat Completions family."""

from __future__ import annotations

import re
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
)
from llm_api_router.families.operations import (
    LimitClass,
    Operation,
    OperationTable,
    StreamFormat,
)
from llm_api_router.families.owned import OwnedIds
from llm_api_router.sse import SSEEvent

__all__ = ["OpenAIFamily"]

_DONE = b"data: [DONE]\n\n"

# (type, code) for the errors the router itself produces, by status.
_ERROR_KINDS: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", None),  # an unknown model passes its own code
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_content_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "no_provider"),
    504: ("server_error", "upstream_timeout"),
}


_POST = frozenset({"POST"})
_GET = frozenset({"GET"})
_GENERATE = LimitClass.GENERATE

#: Every path of the OpenAI API the router knows, first match wins (SPEC section 9).
OPERATIONS = OperationTable(
    (
        Operation(
            "chat",
            "chat/completions",
            _POST,
            generation=True,
            required=("model", "messages"),
            stream=StreamFormat.CHAT,
            limit_class=_GENERATE,
        ),
        Operation(
            "responses",
            "responses",
            _POST,
            generation=True,
            required=("model",),
            stream=StreamFormat.RESPONSES,
            limit_class=_GENERATE,
            owns=True,
            refers=True,
        ),
        Operation(
            "responses_input_tokens",
            "responses/input_tokens",
            _POST,
            generation=True,
            required=("model",),
            limit_class=LimitClass.COUNT_TOKENS,
            refers=True,
        ),
        Operation(
            "responses_compact",
            "responses/compact",
            _POST,
            generation=True,
            required=("model",),
            limit_class=_GENERATE,
            owns=True,
            refers=True,
        ),
        Operation(
            "completions",
            "completions",
            _POST,
            generation=True,
            required=("model",),
            stream=StreamFormat.CHAT,
            limit_class=_GENERATE,
        ),
        Operation(
            "embeddings",
            "embeddings",
            _POST,
            generation=True,
            required=("model",),
            limit_class=LimitClass.EMBEDDINGS,
        ),
        Operation("moderations", "moderations", _POST, generation=True),
        Operation(
            "audio",
            "audio/[^/]+",
            _POST,
            generation=True,
            stream=StreamFormat.CHAT,
            limit_class=_GENERATE,
            accepts_form=True,
        ),
        Operation(
            "images",
            "images/[^/]+",
            _POST,
            generation=True,
            limit_class=_GENERATE,
            accepts_form=True,
        ),
        Operation("models", "models", _GET, model_list=True),
        Operation("model", "models/.+", _GET, model_list=True),
        Operation(
            "responses_object", "responses/.+", limit_class=_GENERATE, owns=True, refers=True
        ),
        Operation("files", "files(/.*)?", limit_class=LimitClass.FILES, owns=True, refers=True),
        Operation("uploads", "uploads(/.*)?", limit_class=LimitClass.FILES, owns=True, refers=True),
        Operation(
            "batches", "batches(/.*)?", limit_class=LimitClass.BATCHES, owns=True, refers=True
        ),
    ),
    Operation("other", ".*", owns=True, refers=True),
)

#: Ids of objects an OpenAI account owns: stored responses and their items (messages,
#: reasoning, function calls), files, uploads, batches, vector stores, conversations,
#: fine-tuning jobs.
OWNED_IDS = OwnedIds(
    ("resp_", "rs_", "msg_", "fc_", "file-", "upload_", "batch_", "vs_", "conv_", "ftjob-")
)

_OUTPUT_FREE_DELTA_KEYS = frozenset({"role", "content", "refusal"})


class OpenAIFamily(ApiFamily):
    """``/openai/X`` and ``/openai/v1/X`` -> ``{base_url}/X`` (chat: ``chat/completions``)."""

    name: ClassVar[Family] = "openai"
    operations: ClassVar[OperationTable] = OPERATIONS
    owned: ClassVar[OwnedIds] = OWNED_IDS
    chat_path: ClassVar[str] = "chat/completions"
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

    def is_not_found(self, status: int, info: UpstreamErrorInfo | None) -> bool:
        # Another organization's stored response or reasoning item is a 400, not a 404.
        return status == 404 or (
            status == 400 and info is not None and info.code in _OWNED_NOT_FOUND_CODES
        )

    def stream_error_status(self, info: UpstreamErrorInfo) -> int:
        kind = f"{info.type} {info.code}".lower()
        if "insufficient_quota" in kind or "rate_limit" in kind:
            return 429
        if any(word in kind for word in _CLIENT_ERROR_WORDS):
            return 400
        return 500

    def new_stream_tracker(self, request: ChatRequest) -> StreamTracker:
        if request.operation is not None and request.operation.stream is StreamFormat.RESPONSES:
            return _ResponsesStreamTracker()
        return _OpenAIStreamTracker(request.include_usage, request.single_choice)

    def error_body(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> bytes:
        return orjson.dumps({"error": _error_object(status, message, code, param)})

    def stream_error_event(self, status: int, message: str, *, code: str | None = None) -> bytes:
        return _stream_error_event(status, message, code)


_OWNED_NOT_FOUND_CODES = frozenset({"previous_response_not_found", "invalid_encrypted_content"})
#: Words in an in-band error's type or code that say the request itself is wrong.
_CLIENT_ERROR_WORDS = ("invalid", "not_found", "policy", "unsupported", "too_large", "flagged")


def _stream_error_event(status: int, message: str, code: str | None) -> bytes:
    return b"data: " + orjson.dumps({"error": _error_object(status, message, code, None)}) + b"\n\n"


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

    def is_preamble(self, event: SSEEvent) -> bool:
        """A chunk with no output yet: only the role, or no choice (e.g. filter results)."""
        chunk = loads_object(event.data.encode())
        if chunk is None or chunk.get("error") or chunk.get("usage"):
            return False
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return False
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("finish_reason") or choice.get("text"):
                return False
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                return False
            if any(v for k, v in delta.items() if k not in _OUTPUT_FREE_DELTA_KEYS):
                return False
            if delta.get("content") or delta.get("refusal"):
                return False
        return True

    def failure(self, status: int, message: str, code: str) -> bytes:
        return _stream_error_event(status, message, code)


_TERMINAL_RESPONSE_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)
_PREAMBLE_RESPONSE_EVENTS = frozenset(
    {"response.created", "response.in_progress", "response.queued"}
)
#: The events whose data the tracker reads; a named event of another type is relayed as is.
_READ_RESPONSE_EVENTS = _TERMINAL_RESPONSE_EVENTS | _PREAMBLE_RESPONSE_EVENTS | {"error"}
_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')


class _ResponsesStreamTracker(StreamTracker):
    """Responses API events: the natural end is response.completed / .incomplete / .failed.

    There is no ``[DONE]``.  A stream the router must end itself ends with a
    ``response.failed`` event built from the upstream's own ``response.created``, so
    clients (the openai SDK, Codex) see a failed response, never an invented success.
    """

    __slots__ = ("_response", "_sequence", "final", "finished", "terminal")

    def __init__(self) -> None:
        self.finished = False
        self.terminal = False
        self.final: bytes | None = None
        self._response: dict[str, Any] = {}
        self._sequence = -1

    def observe(self, event: SSEEvent) -> UpstreamErrorInfo | None:
        raw = event.raw
        found = _SEQUENCE.search(raw)
        if found is not None:
            self._sequence = int(found.group(1))
        name = event.event
        if name is not None and name not in _READ_RESPONSE_EVENTS:
            return None  # output deltas, items and parts: nothing to learn
        data = loads_object(event.data.encode())
        name = name or (data.get("type") if data else None)
        if name in _TERMINAL_RESPONSE_EVENTS:
            self.finished = self.terminal = True
            self.final = raw  # the whole response: its ids are recorded with their account
            if name == "response.failed":
                response = data.get("response") if data else None
                error = response.get("error") if isinstance(response, dict) else None
                return error_info_of(error) if isinstance(error, dict) else _NO_INFO
            return None
        if name in _PREAMBLE_RESPONSE_EVENTS and data is not None:
            response = data.get("response")
            if isinstance(response, dict):
                self._response = response
            return None
        if name == "error":
            error = data.get("error") if data else None
            return error_info_of(error if isinstance(error, dict) else data)
        return None

    def completion(self) -> bytes:
        return b""

    def is_preamble(self, event: SSEEvent) -> bool:
        name = event.event
        if name is None:  # an unnamed event: its data says what it is
            data = loads_object(event.data.encode())
            name = data.get("type") if data else None
        return name in _PREAMBLE_RESPONSE_EVENTS

    def failure(self, status: int, message: str, code: str) -> bytes:
        self._sequence += 1
        response = {
            "id": None,
            "object": "response",
            "created_at": None,
            "model": None,
            "output": [],
            **self._response,
            "status": "failed",
            "error": {"code": code, "message": message},
            "incomplete_details": None,
        }
        payload = {
            "type": "response.failed",
            "sequence_number": self._sequence,
            "response": response,
        }
        self.finished = self.terminal = True
        return b"event: response.failed\ndata: " + orjson.dumps(payload) + b"\n\n"

    def after_error(self, info: UpstreamErrorInfo) -> bytes:
        if self.terminal:
            return b""
        return self.failure(
            500, info.message or "The upstream reported an error.", info.code or "server_error"
        )


_NO_INFO = UpstreamErrorInfo(None, None, "")
