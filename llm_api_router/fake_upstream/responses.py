"""The OpenAI Responses API: stored responses, reasoning items and the references to them.

A response is stored (``store`` defaults to true) in the account of the provider that created
it, with its output items; ``encrypted_content`` handed out (``include:
["reasoning.encrypted_content"]``, compaction) can only be read back by the same account.
Another account gets the real API's errors: ``previous_response_not_found``, ``Item with id
'rs_…' not found``, ``invalid_encrypted_content``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .accounts import Entry
from .call import ApiError, Call, Reply, StreamReply
from .pages import openai_page
from .wire import count_tokens, encrypted_token, hex_id, now, prompt_tokens

__all__ = [
    "Draft",
    "cancel",
    "compact",
    "create",
    "delete",
    "input_items",
    "input_tokens",
    "retrieve",
    "start",
]

RESPONSE = "response"
ITEM = "response_item"
ENCRYPTED = "encrypted_content"
CONVERSATION = "conversation"
_REASONING_TOKENS = 16


@dataclass(eq=False)
class Draft:
    """A response being produced: the (stored) response object and its output items."""

    response: dict[str, Any]
    message: dict[str, Any]
    reasoning: dict[str, Any] | None
    text: str
    input_tokens: int
    output: list[dict[str, Any]] = field(default_factory=list)

    def usage(self) -> dict[str, Any]:
        reasoning = _REASONING_TOKENS if self.reasoning is not None else 0
        output = count_tokens(self.text) + reasoning
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": self.input_tokens + output,
        }

    def output_part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    @property
    def incomplete(self) -> bool:
        """``max_output_tokens`` is below what the answer needs: the real API stops there
        and the response ends ``incomplete``."""
        limit = self.response.get("max_output_tokens")
        return isinstance(limit, int) and limit < self.usage()["output_tokens"]

    def complete(self) -> None:
        status = "incomplete" if self.incomplete else "completed"
        self.message["status"] = status
        self.message["content"] = [self.output_part(self.text)]
        items = [self.reasoning] if self.reasoning is not None else []
        self.response.update(
            status=status,
            completed_at=now() if status == "completed" else None,
            incomplete_details={"reason": "max_output_tokens"} if self.incomplete else None,
            output=[*items, self.message],
            usage=self.usage(),
        )

    def fail(self, code: str, message: str, output: list[dict[str, Any]]) -> None:
        self.response.update(
            status="failed", error={"code": code, "message": message}, output=output
        )


def _not_found_item(item_id: str) -> ApiError:
    return ApiError(
        404,
        f"Item with id '{item_id}' not found. Items are not persisted when `store` is set to "
        "false. Try again with `store` set to true, or remove this item from your input.",
        param="input",
        error_type="invalid_request_error",
    )


def _check_encrypted(call: Call, item_id: object, token: str) -> None:
    if call.objects.get(call.account, ENCRYPTED, token) is None:
        raise ApiError(
            400,
            f"The encrypted content for item {item_id} could not be verified.",
            code="invalid_encrypted_content",
            error_type="invalid_request_error",
        )


def _conversation_id(body: dict[str, Any]) -> str | None:
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    return conversation if isinstance(conversation, str) else None


def check_references(call: Call, body: dict[str, Any]) -> None:
    """Reject references to state this account does not own, as the real API does."""
    previous = body.get("previous_response_id")
    if isinstance(previous, str) and call.objects.get(call.account, RESPONSE, previous) is None:
        raise ApiError(
            400,
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
            error_type="invalid_request_error",
        )
    conversation = _conversation_id(body)
    if (
        conversation is not None
        and call.objects.get(call.account, CONVERSATION, conversation) is None
    ):
        raise ApiError(
            404,
            f"Conversation with id '{conversation}' not found.",
            param="conversation",
            error_type="invalid_request_error",
        )
    items = body.get("input")
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        item_type, item_id = item.get("type"), item.get("id")
        token = item.get("encrypted_content")
        if item_type in ("reasoning", "compaction") and isinstance(token, str):
            _check_encrypted(call, item_id, token)
        elif (
            item_type in ("reasoning", "item_reference")
            and isinstance(item_id, str)
            and call.objects.get(call.account, ITEM, item_id) is None
        ):
            raise _not_found_item(item_id)


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input as the items ``input_items`` lists (each with an id)."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    items: list[dict[str, Any]] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        item = copy.deepcopy(item)
        if "role" in item:
            item.setdefault("type", "message")
            if isinstance(item.get("content"), str):
                kind = "output_text" if item["role"] == "assistant" else "input_text"
                item["content"] = [{"type": kind, "text": item["content"]}]
            item.setdefault("status", "completed")
        item.setdefault("id", hex_id("msg_" if item.get("type") == "message" else "item_"))
        items.append(item)
    return items


def start(call: Call, text: str) -> Draft:
    """Create (and, unless ``store: false``, store) the response for this call."""
    body = call.json if isinstance(call.json, dict) else {}
    include = body.get("include")
    with_encrypted = isinstance(include, list) and "reasoning.encrypted_content" in include
    reasoning_param = body.get("reasoning")
    reasoning: dict[str, Any] | None = None
    if with_encrypted or isinstance(reasoning_param, dict):
        reasoning = {"id": hex_id("rs_"), "type": "reasoning", "summary": []}
        if with_encrypted:
            reasoning["encrypted_content"] = token = encrypted_token()
            call.objects.add(Entry(call.account, ENCRYPTED, {"id": reasoning["id"]}), token)
    message = {
        "id": hex_id("msg_"),
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    store = body.get("store") is not False
    effort = reasoning_param.get("effort") if isinstance(reasoning_param, dict) else None
    response: dict[str, Any] = {
        "id": hex_id("resp_"),
        "object": "response",
        "created_at": now(),
        "status": "in_progress",
        "background": body.get("background") is True,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": call.model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": effort, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": store,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": body.get("tools") if isinstance(body.get("tools"), list) else [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
    }
    conversation = _conversation_id(body)
    if conversation is not None:
        response["conversation"] = {"id": conversation}
    draft = Draft(response, message, reasoning, text, prompt_tokens(body))
    if store:
        call.objects.add(
            Entry(call.account, RESPONSE, response, extra={"input_items": _input_items(body)}),
            response["id"],
        )
        for item in (reasoning, message):
            if item is not None:
                call.objects.add(Entry(call.account, ITEM, item), item["id"])
    return draft


def create(call: Call) -> Reply | StreamReply:
    body = call.object_body()
    call.require("model", types={"model": str})
    check_references(call, body)
    if call.wants_stream:
        return StreamReply()
    draft = start(call, call.text)
    if body.get("background") is True:
        draft.response["status"] = "queued"
    else:
        draft.complete()
    return Reply(draft.response)


def _stored(call: Call) -> Entry:
    response_id = call.params["id"]
    entry = call.objects.get(call.account, RESPONSE, response_id)
    if entry is None:
        raise ApiError(
            404,
            f"Response with id '{response_id}' not found.",
            error_type="invalid_request_error",
        )
    return entry


def _finish_background(entry: Entry) -> None:
    """A background response finishes by the time anyone looks at it again."""
    response = entry.data
    if response.get("status") in ("queued", "in_progress") and response.get("background"):
        message = {
            "id": hex_id("msg_"),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [],
        }
        draft = Draft(response, message, None, "Hello from the background", 1)
        draft.complete()


def retrieve(call: Call) -> Reply:
    entry = _stored(call)
    _finish_background(entry)
    return Reply(entry.data)


def delete(call: Call) -> Reply:
    entry = _stored(call)
    call.objects.delete(call.account, RESPONSE, entry.data["id"])
    return Reply({"id": entry.data["id"], "object": "response", "deleted": True})


def input_items(call: Call) -> Reply:
    entry = _stored(call)
    return Reply(openai_page(call, list(entry.extra.get("input_items", [])), default_order="desc"))


def cancel(call: Call) -> Reply:
    entry = _stored(call)
    response = entry.data
    if not response.get("background"):
        raise ApiError(
            400,
            "Only responses created with background=true can be cancelled.",
            error_type="invalid_request_error",
        )
    if response.get("status") in ("queued", "in_progress"):
        response["status"] = "cancelled"
    return Reply(response)


def input_tokens(call: Call) -> Reply:
    body = call.object_body()
    check_references(call, body)
    return Reply({"object": "response.input_tokens", "input_tokens": prompt_tokens(body)})


def compact(call: Call) -> Reply:
    body = call.object_body()
    call.require("model", types={"model": str})
    check_references(call, body)
    token = encrypted_token()
    item = {"id": hex_id("cmp_"), "type": "compaction", "encrypted_content": token}
    call.objects.add(Entry(call.account, ENCRYPTED, {"id": item["id"]}), token)
    tokens = prompt_tokens(body)
    return Reply(
        {
            "id": hex_id("resp_"),
            "object": "response.compaction",
            "created_at": now(),
            "output": [item],
            "usage": {
                "input_tokens": tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": _REASONING_TOKENS,
                "output_tokens_details": {"reasoning_tokens": _REASONING_TOKENS},
                "total_tokens": tokens + _REASONING_TOKENS,
            },
        }
    )
