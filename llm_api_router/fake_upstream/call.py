"""One API call as an endpoint handler sees it, and what a handler answers (sans-IO)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .accounts import Accounts
from .multipart import Part, parse_multipart
from .recording import Family
from .wire import JSON_CT

__all__ = ["ApiError", "Call", "EventWriter", "Handler", "Reply", "StreamReply"]


class ApiError(Exception):
    """What the real API answers when it rejects a call; rendered in the family's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type


@dataclass
class Call:
    """The parsed request: who is asking (provider, account), what, and with which body.

    ``api_base`` is the absolute URL of the provider's API root (``http://host:port/p``),
    for the URLs the real APIs put in their answers (Anthropic ``results_url``).
    """

    provider: str
    account: str
    family: Family
    operation: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    json: Any
    api_base: str
    objects: Accounts
    text: str
    models: tuple[str, ...] | None = None

    @property
    def model(self) -> str:
        model = self.json.get("model") if isinstance(self.json, dict) else None
        return model if isinstance(model, str) else "fake-model"

    @property
    def wants_stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    def object_body(self) -> dict[str, Any]:
        """The JSON object body, or the family's 400."""
        if isinstance(self.json, dict):
            return self.json
        if self.family == "openai":
            raise ApiError(400, "We could not parse the JSON body of your request.")
        raise ApiError(400, "Request body must be a valid JSON object.")

    def require(
        self, *names: str, types: Mapping[str, type | tuple[type, ...]] | None = None
    ) -> None:
        """Reject a body without ``names`` (or of a wrong type) as the real API does."""
        body = self.object_body()
        for name in names:
            if name not in body:
                if self.family == "openai":
                    raise ApiError(
                        400,
                        f"Missing required parameter: '{name}'.",
                        param=name,
                        code="missing_required_parameter",
                    )
                raise ApiError(400, f"{name}: Field required")
        for name, kind in (types or {}).items():
            if name in body and not isinstance(body[name], kind):
                raise ApiError(400, f"Invalid type for '{name}'.", param=name, code="invalid_type")

    def form(self) -> dict[str, Part]:
        """The multipart form fields, or a 400 when the body is not multipart."""
        parts = parse_multipart(self.headers.get("content-type", ""), self.body)
        if parts is None:
            raise ApiError(400, "Expected a multipart/form-data body.")
        return parts

    def query_int(self, name: str, default: int) -> int:
        value = self.query.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ApiError(400, f"Invalid value for '{name}': {value!r}.", param=name) from None


@dataclass(frozen=True)
class Reply:
    """A complete answer: JSON (``json_body``) or raw bytes (``body`` + ``content_type``)."""

    json_body: Any = None
    status: int = 200
    body: bytes | None = None
    content_type: str = JSON_CT
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is not None:
            return self.body
        return json.dumps(self.json_body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class StreamReply:
    """The call asked for a stream and may have one: the server streams ``Ok.text``."""


class EventWriter(Protocol):
    """The SSE events of one stream in an endpoint's format."""

    #: True when the stream always starts with its opening events, even for ``error_at=0``.
    opens_always: bool

    def opening(self) -> list[bytes]: ...

    def content(self, piece: str) -> bytes: ...

    def malformed(self) -> bytes: ...

    def error(self, error_type: str, message: str, code: str | None, form: str) -> list[bytes]: ...

    def closing(self, omit_done: bool) -> list[bytes]: ...


Handler = Callable[[Call], Reply | StreamReply]
