"""Anthropic endpoints: messages, token counting, models, message batches and (beta) files.

Batches and files belong to the account (workspace) that created them. A batch ends at the
first look after ``create``; its ``results_url`` is an absolute URL to this fake, as the real
API gives one to itself.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .accounts import Entry
from .call import ApiError, Call, Reply, StreamReply
from .pages import anthropic_page
from .wire import count_tokens, new_id, prompt_tokens, rfc3339

__all__ = [
    "DEFAULT_ANTHROPIC_MODELS",
    "batch_cancel",
    "batch_create",
    "batch_delete",
    "batch_list",
    "batch_results",
    "batch_retrieve",
    "count_tokens_handler",
    "file_content",
    "file_create",
    "file_delete",
    "file_list",
    "file_retrieve",
    "messages",
    "model",
    "models",
]

DEFAULT_ANTHROPIC_MODELS = (
    ("claude-opus-4-1-20250805", "Claude Opus 4.1"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5"),
)
BATCH = "anthropic_batch"
FILE = "anthropic_file"
_MODEL_CREATED = 1_740_000_000
_DAY = 86_400
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _not_found(message: str) -> ApiError:
    return ApiError(404, message, error_type="not_found_error")


def _message(call: Call, model: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("msg_01", 22, _BASE62),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": call.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens(body), "output_tokens": count_tokens(call.text)},
    }


def messages(call: Call) -> Reply | StreamReply:
    call.require("model", "messages", "max_tokens")
    body = call.object_body()
    if not isinstance(body["model"], str) or not isinstance(body["messages"], list):
        raise ApiError(400, "Invalid type for 'model' or 'messages'.", code="invalid_type")
    if call.wants_stream:
        return StreamReply()
    return Reply(_message(call, call.model, body))


def count_tokens_handler(call: Call) -> Reply:
    call.require("model", "messages", types={"model": str, "messages": list})
    return Reply({"input_tokens": prompt_tokens(call.object_body())})


def _models(call: Call) -> list[tuple[str, str]]:
    if call.models is not None:
        return [(name, name) for name in call.models]
    return list(DEFAULT_ANTHROPIC_MODELS)


def _model_info(model_id: str, display_name: str, index: int) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name,
        "created_at": rfc3339(_MODEL_CREATED - index * _DAY),
        "lifecycle": "active",
    }


def models(call: Call) -> Reply:
    # The real list is newest first; anthropic_page expects oldest first.
    infos = [_model_info(m, name, i) for i, (m, name) in enumerate(_models(call))][::-1]
    return Reply(anthropic_page(call, infos))


def model(call: Call) -> Reply:
    for index, (model_id, name) in enumerate(_models(call)):
        if model_id == call.params["id"]:
            return Reply(_model_info(model_id, name, index))
    raise _not_found(f"model: {call.params['id']}")


# --------------------------------------------------------------------------- batches


def batch_create(call: Call) -> Reply:
    call.require("requests", types={"requests": list})
    requests = call.object_body()["requests"]
    for index, item in enumerate(requests):
        if not isinstance(item, dict) or "custom_id" not in item or "params" not in item:
            raise ApiError(400, f"requests.{index}: custom_id and params are required")
    created = time.time()
    data = {
        "id": new_id("msgbatch_01", 22, _BASE62),
        "type": "message_batch",
        "processing_status": "in_progress",
        "request_counts": {
            "processing": len(requests),
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "ended_at": None,
        "created_at": rfc3339(created),
        "expires_at": rfc3339(created + _DAY),
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": None,
    }
    extra = {"requests": requests, "canceled": False}
    call.objects.add(Entry(call.account, BATCH, data, extra=extra), data["id"])
    return Reply(data)


def _batch(call: Call) -> Entry:
    batch_id = call.params["id"]
    entry = call.objects.get(call.account, BATCH, batch_id)
    if entry is None:
        raise _not_found(f"Message batch {batch_id} not found.")
    return entry


def _progress(call: Call, entry: Entry) -> None:
    data = entry.data
    if data["processing_status"] == "ended":
        return
    total = len(entry.extra["requests"])
    outcome = "canceled" if entry.extra["canceled"] else "succeeded"
    data.update(
        processing_status="ended",
        ended_at=rfc3339(time.time()),
        results_url=f"{call.api_base}/v1/messages/batches/{data['id']}/results",
        request_counts={
            "processing": 0,
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
            outcome: total,
        },
    )


def batch_retrieve(call: Call) -> Reply:
    entry = _batch(call)
    _progress(call, entry)
    return Reply(entry.data)


def batch_list(call: Call) -> Reply:
    entries = call.objects.of_kind(call.account, BATCH)
    for entry in entries:
        _progress(call, entry)
    return Reply(anthropic_page(call, [e.data for e in entries]))


def batch_cancel(call: Call) -> Reply:
    entry = _batch(call)
    if entry.data["processing_status"] == "in_progress":
        entry.extra["canceled"] = True
        entry.data.update(processing_status="canceling", cancel_initiated_at=rfc3339(time.time()))
    return Reply(entry.data)


def batch_delete(call: Call) -> Reply:
    entry = _batch(call)
    if entry.data["processing_status"] != "ended":
        raise ApiError(400, "Batches that are in progress cannot be deleted; cancel it first.")
    call.objects.delete(call.account, BATCH, entry.data["id"])
    return Reply({"id": entry.data["id"], "type": "message_batch_deleted"})


def batch_results(call: Call) -> Reply:
    entry = _batch(call)
    _progress(call, entry)
    lines = []
    for item in entry.extra["requests"]:
        params = item.get("params") if isinstance(item.get("params"), dict) else {}
        if entry.extra["canceled"]:
            result: dict[str, Any] = {"type": "canceled"}
        else:
            model_name = str(params.get("model", "fake-model"))
            result = {"type": "succeeded", "message": _message(call, model_name, params)}
        lines.append(json.dumps({"custom_id": item["custom_id"], "result": result}).encode())
    return Reply(body=b"\n".join(lines) + b"\n", content_type="application/binary")


# --------------------------------------------------------------------------- files (beta)


def file_create(call: Call) -> Reply:
    form = call.form()
    if "file" not in form:
        raise ApiError(400, "file: Field required")
    upload = form["file"]
    data = {
        "id": new_id("file_011C", 20, _BASE62),
        "type": "file",
        "filename": upload.filename or "file",
        "mime_type": upload.content_type or "application/octet-stream",
        "size_bytes": len(upload.content),
        "created_at": rfc3339(time.time()),
        "downloadable": True,
    }
    call.objects.add(Entry(call.account, FILE, data, content=upload.content), data["id"])
    return Reply(data)


def _file(call: Call) -> Entry:
    file_id = call.params["id"]
    entry = call.objects.get(call.account, FILE, file_id)
    if entry is None:
        raise _not_found(f"File not found: {file_id}")
    return entry


def file_list(call: Call) -> Reply:
    return Reply(anthropic_page(call, [e.data for e in call.objects.of_kind(call.account, FILE)]))


def file_retrieve(call: Call) -> Reply:
    return Reply(_file(call).data)


def file_content(call: Call) -> Reply:
    entry = _file(call)
    return Reply(body=entry.content or b"", content_type=entry.data["mime_type"])


def file_delete(call: Call) -> Reply:
    entry = _file(call)
    call.objects.delete(call.account, FILE, entry.data["id"])
    return Reply({"id": entry.data["id"], "type": "file_deleted"})
