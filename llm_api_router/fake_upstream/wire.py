"""Wire-format helpers shared by both families: JSON, token counts, error bodies, ids."""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .behaviours import Error

JSON_CT = "application/json"
SSE_CT = "text/event-stream; charset=utf-8"
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24, alphabet: str = _ALNUM) -> str:
    """A random id that looks like the real ones: ``new_id("file-", 22)``."""
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def hex_id(prefix: str, length: int = 48) -> str:
    return prefix + secrets.token_hex(length // 2)


def now() -> int:
    return int(time.time())


def rfc3339(timestamp: float) -> str:
    """``2025-05-14T00:00:00Z``, as Anthropic writes times."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encrypted_token() -> str:
    """Opaque ``encrypted_content``, shaped like the Fernet tokens the real API sends."""
    return "gAAAAAB" + base64.urlsafe_b64encode(secrets.token_bytes(96)).decode().rstrip("=")


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def count_tokens(text: str) -> int:
    return max(1, len(re.findall(r"\w+|[^\w\s]", text)))


def content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_tokens(body: object) -> int:
    """A rough token count of what a request asks about (messages, input, prompt, system)."""
    if not isinstance(body, dict):
        return 1
    texts = [content_text(body.get(key)) for key in ("system", "instructions", "prompt")]
    for key in ("messages", "input"):
        items = body.get(key)
        if isinstance(items, str):
            texts.append(items)
        elif isinstance(items, list):
            texts.extend(content_text(m.get("content")) for m in items if isinstance(m, dict))
            texts.extend(m for m in items if isinstance(m, str))
    return count_tokens(" ".join(texts))


def split_text(text: str, pieces: int) -> list[str]:
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


def openai_error(error: Error, model: str) -> dict[str, Any]:
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


def anthropic_error(error: Error, model: str, request_id: str) -> dict[str, Any]:
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


def header_dict(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated headers are joined with ", "."""
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def lower_headers(*mappings: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for mapping in mappings:
        for name, value in mapping.items():
            out[name.lower()] = value
    return out


def openai_usage(body: object, completion_tokens: int) -> dict[str, int]:
    prompt = prompt_tokens(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
