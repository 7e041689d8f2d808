"""The server side of one request: its connection, what it asked, and the headers the
real APIs put on every answer."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .recording import Family
from .routes import Operation

__all__ = ["Exchange"]

_RATE_LIMIT = 10_000


@dataclass(eq=False)
class Exchange:
    """Per-request context of the server side."""

    request: web.Request
    provider: str
    family: Family
    operation: Operation | None
    params: Mapping[str, str]
    headers: dict[str, str]
    raw: bytes
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
