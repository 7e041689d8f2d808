"""OpenAI objects owned by an account: files, uploads, batches, vector stores, conversations.

Each is found only through a provider of the account that created it; elsewhere it is the
real API's 404. Batches finish instantly: the first look after ``create`` sees them
``completed``, with an output file of results in the same account.
"""

from __future__ import annotations

import json
from typing import Any

from . import responses
from .accounts import Entry
from .call import ApiError, Call, Reply
from .multipart import Part
from .pages import openai_page
from .wire import count_tokens, hex_id, new_id, now, openai_usage

__all__ = [
    "batch_cancel",
    "batch_create",
    "batch_list",
    "batch_retrieve",
    "conversation_create",
    "conversation_delete",
    "conversation_retrieve",
    "file_content",
    "file_create",
    "file_delete",
    "file_list",
    "file_retrieve",
    "upload_cancel",
    "upload_complete",
    "upload_create",
    "upload_part",
    "vector_store_create",
    "vector_store_delete",
    "vector_store_list",
    "vector_store_retrieve",
]

FILE = "file"
UPLOAD = "upload"
BATCH = "batch"
VECTOR_STORE = "vector_store"
CONVERSATION = responses.CONVERSATION
_DAY = 86_400


def _missing(name: str) -> ApiError:
    return ApiError(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def _not_found(message: str, param: str | None = None) -> ApiError:
    return ApiError(404, message, param=param, error_type="invalid_request_error")


def _entry(call: Call, kind: str, message: str) -> Entry:
    object_id = call.params["id"]
    entry = call.objects.get(call.account, kind, object_id)
    if entry is None:
        raise _not_found(message.format(id=object_id), "id" if kind == FILE else None)
    return entry


# --------------------------------------------------------------------------- files


def store_file(call: Call, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
    data = {
        "id": new_id("file-", 22),
        "object": "file",
        "bytes": len(content),
        "created_at": now(),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }
    call.objects.add(Entry(call.account, FILE, data, content=content), data["id"])
    return data


def file_create(call: Call) -> Reply:
    form = call.form()
    for name in ("file", "purpose"):
        if name not in form:
            raise _missing(name)
    upload: Part = form["file"]
    data = store_file(call, upload.content, upload.filename or "file", form["purpose"].text)
    return Reply(data)


def file_list(call: Call) -> Reply:
    items = [e.data for e in call.objects.of_kind(call.account, FILE)]
    purpose = call.query.get("purpose")
    if purpose is not None:
        items = [item for item in items if item["purpose"] == purpose]
    page = openai_page(call, items, default_order="desc")
    return Reply(page)


def _file(call: Call) -> Entry:
    return _entry(call, FILE, "No such File object: {id}")


def file_retrieve(call: Call) -> Reply:
    return Reply(_file(call).data)


def file_content(call: Call) -> Reply:
    entry = _file(call)
    return Reply(body=entry.content or b"", content_type="application/octet-stream")


def file_delete(call: Call) -> Reply:
    entry = _file(call)
    call.objects.delete(call.account, FILE, entry.data["id"])
    return Reply({"id": entry.data["id"], "object": "file", "deleted": True})


# --------------------------------------------------------------------------- uploads


def upload_create(call: Call) -> Reply:
    call.require("bytes", "filename", "mime_type", "purpose", types={"bytes": int})
    body = call.object_body()
    created = now()
    data = {
        "id": new_id("upload_", 24),
        "object": "upload",
        "bytes": body["bytes"],
        "created_at": created,
        "expires_at": created + 3600,
        "filename": body["filename"],
        "purpose": body["purpose"],
        "status": "pending",
        "file": None,
    }
    call.objects.add(Entry(call.account, UPLOAD, data, extra={"parts": {}}), data["id"])
    return Reply(data)


def _pending_upload(call: Call) -> Entry:
    entry = _entry(call, UPLOAD, "No such Upload object: {id}")
    if entry.data["status"] != "pending":
        raise ApiError(
            400,
            f"Upload {entry.data['id']} is already {entry.data['status']}.",
            error_type="invalid_request_error",
        )
    return entry


def upload_part(call: Call) -> Reply:
    entry = _pending_upload(call)
    form = call.form()
    if "data" not in form:
        raise _missing("data")
    part = {
        "id": new_id("part_", 24),
        "object": "upload.part",
        "created_at": now(),
        "upload_id": entry.data["id"],
    }
    entry.extra["parts"][part["id"]] = form["data"].content
    return Reply(part)


def upload_complete(call: Call) -> Reply:
    entry = _pending_upload(call)
    call.require("part_ids", types={"part_ids": list})
    parts: dict[str, bytes] = entry.extra["parts"]
    chunks = []
    for part_id in call.object_body()["part_ids"]:
        if not isinstance(part_id, str) or part_id not in parts:
            raise ApiError(400, f"Invalid part id: {part_id}", param="part_ids")
        chunks.append(parts[part_id])
    content = b"".join(chunks)
    if len(content) != entry.data["bytes"]:
        raise ApiError(
            400,
            f"The number of bytes uploaded ({len(content)}) does not match the number of bytes "
            f"declared ({entry.data['bytes']}).",
        )
    entry.data["file"] = store_file(call, content, entry.data["filename"], entry.data["purpose"])
    entry.data["status"] = "completed"
    return Reply(entry.data)


def upload_cancel(call: Call) -> Reply:
    entry = _pending_upload(call)
    entry.data["status"] = "cancelled"
    return Reply(entry.data)


# --------------------------------------------------------------------------- batches


def _batch_result(call: Call, line: dict[str, Any]) -> dict[str, Any]:
    body = line.get("body") if isinstance(line.get("body"), dict) else {}
    model = body.get("model", "fake-model") if isinstance(body, dict) else "fake-model"
    text = call.text
    result: dict[str, Any]
    if str(line.get("url", "")).endswith("/embeddings"):
        result = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.1, 0.2]}],
            "model": model,
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
    else:
        result = {
            "id": hex_id("chatcmpl-", 24),
            "object": "chat.completion",
            "created": now(),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": openai_usage(body, count_tokens(text)),
        }
    return {
        "id": hex_id("batch_req_", 32),
        "custom_id": line.get("custom_id"),
        "response": {"status_code": 200, "request_id": hex_id("", 32), "body": result},
        "error": None,
    }


def batch_create(call: Call) -> Reply:
    call.require("input_file_id", "endpoint", "completion_window")
    body = call.object_body()
    file_id = body["input_file_id"]
    source = call.objects.get(call.account, FILE, str(file_id))
    if source is None:
        raise _not_found(f"No such File object: {file_id}", "input_file_id")
    try:
        lines = [json.loads(line) for line in (source.content or b"").splitlines() if line.strip()]
    except ValueError:
        raise ApiError(
            400, "The input file is not valid JSONL.", param="input_file_id", code="invalid_file"
        ) from None
    if not all(isinstance(line, dict) for line in lines):
        raise ApiError(
            400, "Each line of the input file must be a JSON object.", code="invalid_file"
        )
    created = now()
    data = {
        "id": hex_id("batch_", 32),
        "object": "batch",
        "endpoint": body["endpoint"],
        "errors": None,
        "input_file_id": file_id,
        "completion_window": body["completion_window"],
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": created,
        "in_progress_at": None,
        "expires_at": created + _DAY,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "metadata": body.get("metadata"),
    }
    call.objects.add(Entry(call.account, BATCH, data, extra={"lines": lines}), data["id"])
    return Reply(data)


def _progress(call: Call, entry: Entry) -> None:
    """Finish the batch: the first look after ``create`` (or ``cancel``) sees its end."""
    data = entry.data
    stamp = now()
    if data["status"] == "cancelling":
        data.update(status="cancelled", cancelled_at=stamp)
    elif data["status"] == "validating":
        lines: list[dict[str, Any]] = entry.extra["lines"]
        output = b"".join(json.dumps(_batch_result(call, line)).encode() + b"\n" for line in lines)
        out = store_file(call, output, f"{data['id']}_output.jsonl", "batch_output")
        data.update(
            status="completed",
            in_progress_at=stamp,
            finalizing_at=stamp,
            completed_at=stamp,
            output_file_id=out["id"],
            request_counts={"total": len(lines), "completed": len(lines), "failed": 0},
        )


def _batch(call: Call) -> Entry:
    return _entry(call, BATCH, "No batch found with id '{id}'.")


def batch_retrieve(call: Call) -> Reply:
    entry = _batch(call)
    _progress(call, entry)
    return Reply(entry.data)


def batch_list(call: Call) -> Reply:
    entries = call.objects.of_kind(call.account, BATCH)
    for entry in entries:
        _progress(call, entry)
    return Reply(openai_page(call, [e.data for e in entries], default_order="desc"))


def batch_cancel(call: Call) -> Reply:
    entry = _batch(call)
    if entry.data["status"] not in ("validating", "in_progress"):
        raise ApiError(
            409,
            f"Cannot cancel a batch with status '{entry.data['status']}'.",
            error_type="invalid_request_error",
        )
    entry.data.update(status="cancelling", cancelling_at=now())
    return Reply(entry.data)


# --------------------------------------------------------------------------- vector stores


def vector_store_create(call: Call) -> Reply:
    body = call.object_body()
    file_ids = body.get("file_ids") or []
    if not isinstance(file_ids, list):
        raise ApiError(400, "Invalid type for 'file_ids'.", param="file_ids", code="invalid_type")
    for file_id in file_ids:
        if call.objects.get(call.account, FILE, str(file_id)) is None:
            raise _not_found(f"No such File object: {file_id}", "file_ids")
    created = now()
    data = {
        "id": new_id("vs_", 24),
        "object": "vector_store",
        "created_at": created,
        "name": body.get("name"),
        "usage_bytes": 0,
        "file_counts": {
            "in_progress": 0,
            "completed": len(file_ids),
            "failed": 0,
            "cancelled": 0,
            "total": len(file_ids),
        },
        "status": "completed",
        "expires_after": None,
        "expires_at": None,
        "last_active_at": created,
        "metadata": body.get("metadata") or {},
    }
    call.objects.add(Entry(call.account, VECTOR_STORE, data), data["id"])
    return Reply(data)


def _vector_store(call: Call) -> Entry:
    return _entry(call, VECTOR_STORE, "No vector store found with id '{id}'.")


def vector_store_retrieve(call: Call) -> Reply:
    return Reply(_vector_store(call).data)


def vector_store_list(call: Call) -> Reply:
    items = [e.data for e in call.objects.of_kind(call.account, VECTOR_STORE)]
    return Reply(openai_page(call, items, default_order="desc"))


def vector_store_delete(call: Call) -> Reply:
    entry = _vector_store(call)
    call.objects.delete(call.account, VECTOR_STORE, entry.data["id"])
    return Reply({"id": entry.data["id"], "object": "vector_store.deleted", "deleted": True})


# --------------------------------------------------------------------------- conversations


def conversation_create(call: Call) -> Reply:
    body = call.json if isinstance(call.json, dict) else {}
    data = {
        "id": hex_id("conv_", 48),
        "object": "conversation",
        "created_at": now(),
        "metadata": body.get("metadata") or {},
    }
    call.objects.add(Entry(call.account, CONVERSATION, data), data["id"])
    return Reply(data)


def _conversation(call: Call) -> Entry:
    return _entry(call, CONVERSATION, "Conversation with id '{id}' not found.")


def conversation_retrieve(call: Call) -> Reply:
    return Reply(_conversation(call).data)


def conversation_delete(call: Call) -> Reply:
    entry = _conversation(call)
    call.objects.delete(call.account, CONVERSATION, entry.data["id"])
    return Reply({"id": entry.data["id"], "object": "conversation.deleted", "deleted": True})
