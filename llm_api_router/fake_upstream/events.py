"""SSE events of Chat Completions, legacy Completions and Anthropic Messages streams."""

from __future__ import annotations

import secrets
import time
from typing import Any

from .call import Call
from .wire import count_tokens, dumps, openai_usage, prompt_tokens

__all__ = ["ChatEvents", "CompletionEvents", "MessagesEvents", "sse_data", "sse_event"]

MALFORMED_DATA = b"data: {this is not json\n\n"


def sse_data(obj: object) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def sse_event(name: str, obj: object) -> bytes:
    return b"event: " + name.encode() + b"\n" + sse_data(obj)


def _include_usage(call: Call) -> bool:
    options = call.json.get("stream_options") if isinstance(call.json, dict) else None
    return isinstance(options, dict) and options.get("include_usage") is True


def _openai_error_event(error_type: str, message: str, code: str | None) -> bytes:
    return sse_data(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    )


class ChatEvents:
    """``chat.completion.chunk`` data lines, ending with ``data: [DONE]``."""

    opens_always = False

    def __init__(self, call: Call, text: str) -> None:
        self._call = call
        self._text = text
        self._created = int(time.time())
        self._id = "chatcmpl-" + secrets.token_hex(12)
        self._usage = _include_usage(call)

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._call.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self._usage:
            chunk["usage"] = None
        return chunk

    def opening(self) -> list[bytes]:
        return [sse_data(self._chunk({"role": "assistant", "content": ""}))]

    def content(self, piece: str) -> bytes:
        return sse_data(self._chunk({"content": piece}))

    def malformed(self) -> bytes:
        return MALFORMED_DATA

    def error(self, error_type: str, message: str, code: str | None, form: str) -> list[bytes]:
        return [_openai_error_event(error_type, message, code)]

    def closing(self, omit_done: bool) -> list[bytes]:
        usage = self._chunk({}) if self._usage else None
        finish = self._chunk({}, finish_reason="stop")
        return _openai_closing(finish, usage, self._call, self._text, omit_done)


def _openai_closing(
    finish: dict[str, Any], usage: dict[str, Any] | None, call: Call, text: str, omit_done: bool
) -> list[bytes]:
    """The end of an OpenAI stream: the finish chunk, the usage chunk (built on ``usage``,
    when asked for) and ``data: [DONE]`` (unless omitted)."""
    out = [sse_data(finish)]
    if usage is not None:
        usage["choices"] = []
        usage["usage"] = openai_usage(call.json, count_tokens(text))
        out.append(sse_data(usage))
    if not omit_done:
        out.append(b"data: [DONE]\n\n")
    return out


class CompletionEvents:
    """Legacy ``text_completion`` chunks, ending with ``data: [DONE]``."""

    opens_always = False

    def __init__(self, call: Call, text: str) -> None:
        self._call = call
        self._text = text
        self._created = int(time.time())
        self._id = "cmpl-" + secrets.token_hex(12)

    def _chunk(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "text_completion",
            "created": self._created,
            "model": self._call.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def opening(self) -> list[bytes]:
        return []

    def content(self, piece: str) -> bytes:
        return sse_data(self._chunk(piece, None))

    def malformed(self) -> bytes:
        return MALFORMED_DATA

    def error(self, error_type: str, message: str, code: str | None, form: str) -> list[bytes]:
        return [_openai_error_event(error_type, message, code)]

    def closing(self, omit_done: bool) -> list[bytes]:
        usage = self._chunk("", None) if _include_usage(self._call) else None
        return _openai_closing(self._chunk("", "stop"), usage, self._call, self._text, omit_done)


class MessagesEvents:
    """Anthropic Messages events: ``message_start`` .. ``message_stop``."""

    opens_always = False

    def __init__(self, call: Call, text: str) -> None:
        self._call = call
        self._text = text
        self._id = "msg_" + secrets.token_hex(12)

    def opening(self) -> list[bytes]:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens(self._call.json), "output_tokens": 1},
        }
        block = {"type": "text", "text": ""}
        return [
            sse_event("message_start", {"type": "message_start", "message": message}),
            sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
            sse_event("ping", {"type": "ping"}),
        ]

    def content(self, piece: str) -> bytes:
        delta = {"type": "text_delta", "text": piece}
        return sse_event(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )

    def malformed(self) -> bytes:
        return b"event: content_block_delta\n" + MALFORMED_DATA

    def error(self, error_type: str, message: str, code: str | None, form: str) -> list[bytes]:
        return [
            sse_event("error", {"type": "error", "error": {"type": error_type, "message": message}})
        ]

    def closing(self, omit_done: bool) -> list[bytes]:
        return [
            sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": count_tokens(self._text)},
                },
            ),
            sse_event("message_stop", {"type": "message_stop"}),
        ]
