"""The Responses API event stream, in the real order, with ``event:`` lines and
``sequence_number``::

    response.created, response.in_progress,
    [reasoning: response.output_item.added, response.output_item.done,]
    response.output_item.added, response.content_part.added, response.output_text.delta…,
    response.output_text.done, response.content_part.done, response.output_item.done,
    response.completed (response.incomplete when ``max_output_tokens`` cut the answer short)

An in-band failure is an ``error`` event and/or ``response.failed`` whose ``response.error``
carries ``code`` and ``message`` (what the Codex CLI reads to decide what to do).
"""

from __future__ import annotations

import copy
from typing import Any

from .call import Call
from .events import MALFORMED_DATA, sse_event
from .responses import Draft, start
from .wire import new_id

__all__ = ["ResponsesEvents", "responses_events"]

_RATE_LIMIT_TYPES = frozenset({"rate_limit_error", "rate_limit_exceeded", "requests", "tokens"})


def failure_code(error_type: str) -> str:
    """``response.error.code`` for an error type of :class:`Stream` (``error_type``)."""
    if error_type in _RATE_LIMIT_TYPES:
        return "rate_limit_exceeded"
    if error_type == "insufficient_quota":
        return "insufficient_quota"
    return "server_error"


class ResponsesEvents:
    """The events of one Responses stream; the :class:`Draft` keeps the stored response
    in step (``in_progress`` → ``completed`` / ``failed``)."""

    opens_always = True

    def __init__(self, draft: Draft, obfuscate: bool = True) -> None:
        self._draft = draft
        self._obfuscate = obfuscate
        self._sequence = 0
        self._started = False
        self._message_index = 1 if draft.reasoning is not None else 0
        self._done_items: list[dict[str, Any]] = []

    def _event(self, name: str, fields: dict[str, Any]) -> bytes:
        data = {"type": name, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return sse_event(name, data)

    def _response(self) -> dict[str, Any]:
        return copy.deepcopy(self._draft.response)

    def opening(self) -> list[bytes]:
        return [
            self._event("response.created", {"response": self._response()}),
            self._event("response.in_progress", {"response": self._response()}),
        ]

    def _start_items(self) -> list[bytes]:
        out: list[bytes] = []
        draft = self._draft
        if draft.reasoning is not None:
            added = {**draft.reasoning, "encrypted_content": None}
            out.append(
                self._event("response.output_item.added", {"output_index": 0, "item": added})
            )
            out.append(
                self._event(
                    "response.output_item.done", {"output_index": 0, "item": draft.reasoning}
                )
            )
            self._done_items.append(draft.reasoning)
        out.append(
            self._event(
                "response.output_item.added",
                {"output_index": self._message_index, "item": copy.deepcopy(draft.message)},
            )
        )
        out.append(
            self._event(
                "response.content_part.added",
                {**self._where(), "part": draft.output_part("")},
            )
        )
        return out

    def _where(self) -> dict[str, Any]:
        return {
            "item_id": self._draft.message["id"],
            "output_index": self._message_index,
            "content_index": 0,
        }

    def content(self, piece: str) -> bytes:
        out = [] if self._started else self._start_items()
        self._started = True
        fields = {**self._where(), "delta": piece, "logprobs": []}
        if self._obfuscate:
            # Real deltas are padded so that their size does not reveal the text.
            fields["obfuscation"] = new_id("", 16 - len(piece) % 16)
        out.append(self._event("response.output_text.delta", fields))
        return b"".join(out)

    def malformed(self) -> bytes:
        return b"event: response.output_text.delta\n" + MALFORMED_DATA

    def error(self, error_type: str, message: str, code: str | None, form: str) -> list[bytes]:
        code = code or failure_code(error_type)
        out: list[bytes] = []
        if form in ("error_and_failed", "error"):
            out.append(self._event("error", {"code": code, "message": message, "param": None}))
        if form in ("error_and_failed", "failed"):
            output = list(self._done_items)
            if self._started:
                output.append(self._draft.message)
            self._draft.fail(code, message, output)
            out.append(self._event("response.failed", {"response": self._response()}))
        return out

    def closing(self, omit_done: bool) -> list[bytes]:
        draft = self._draft
        draft.complete()
        text = draft.text
        return [
            self._event(
                "response.output_text.done", {**self._where(), "text": text, "logprobs": []}
            ),
            self._event(
                "response.content_part.done", {**self._where(), "part": draft.output_part(text)}
            ),
            self._event(
                "response.output_item.done",
                {"output_index": self._message_index, "item": copy.deepcopy(draft.message)},
            ),
            self._event(f"response.{draft.response['status']}", {"response": self._response()}),
        ]


def responses_events(call: Call, text: str) -> ResponsesEvents:
    """Start (and store) a response for ``call`` and return its event writer."""
    options = call.json.get("stream_options") if isinstance(call.json, dict) else None
    obfuscate = not (isinstance(options, dict) and options.get("include_obfuscation") is False)
    return ResponsesEvents(start(call, text), obfuscate)
