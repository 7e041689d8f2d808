"""The operation table: which path (after ``/{provider}/v1/``) is which endpoint of which API.

``models`` and ``files`` exist in both APIs; a request carrying ``anthropic-version`` (every
Anthropic client sends it) is matched against the Anthropic rows first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import anthropic_api, openai_api, openai_objects, responses
from .call import Call, EventWriter, Handler
from .events import ChatEvents, CompletionEvents, MessagesEvents
from .recording import Family
from .responses_stream import responses_events

__all__ = [
    "OPERATIONS",
    "OPERATION_NAMES",
    "Operation",
    "chat_operation",
    "check_operation",
    "default_events",
    "match",
]

EventsFactory = Callable[[Call, str], EventWriter]


@dataclass(frozen=True)
class Operation:
    """One endpoint: ``name`` (e.g. ``files.content``), its family, method and path pattern,
    its handler, and the writer of its SSE format (``None``: the family's chat format)."""

    name: str
    family: Family
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    events: EventsFactory | None = None


def _op(
    name: str,
    family: Family,
    method: str,
    path: str,
    handler: Handler,
    events: EventsFactory | None = None,
) -> Operation:
    pattern = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path))
    return Operation(name, family, method, pattern, handler, events)


def _table() -> tuple[Operation, ...]:
    oa: Family = "openai"
    an: Family = "anthropic"
    o, a, r = openai_objects, anthropic_api, responses
    return (
        _op("chat.completions", oa, "POST", "chat/completions", openai_api.chat, ChatEvents),
        _op("responses.create", oa, "POST", "responses", r.create, responses_events),
        _op("responses.input_tokens", oa, "POST", "responses/input_tokens", r.input_tokens),
        _op("responses.compact", oa, "POST", "responses/compact", r.compact),
        _op("responses.retrieve", oa, "GET", "responses/{id}", r.retrieve),
        _op("responses.delete", oa, "DELETE", "responses/{id}", r.delete),
        _op("responses.input_items", oa, "GET", "responses/{id}/input_items", r.input_items),
        _op("responses.cancel", oa, "POST", "responses/{id}/cancel", r.cancel),
        _op("completions", oa, "POST", "completions", openai_api.completions, CompletionEvents),
        _op("embeddings", oa, "POST", "embeddings", openai_api.embeddings),
        _op("moderations", oa, "POST", "moderations", openai_api.moderations),
        _op("audio.speech", oa, "POST", "audio/speech", openai_api.speech),
        _op("audio.transcriptions", oa, "POST", "audio/transcriptions", openai_api.transcriptions),
        _op("audio.translations", oa, "POST", "audio/translations", openai_api.transcriptions),
        _op("images.generations", oa, "POST", "images/generations", openai_api.image_generations),
        _op("models.list", oa, "GET", "models", openai_api.models),
        _op("models.retrieve", oa, "GET", "models/{id}", openai_api.model),
        _op("files.create", oa, "POST", "files", o.file_create),
        _op("files.list", oa, "GET", "files", o.file_list),
        _op("files.retrieve", oa, "GET", "files/{id}", o.file_retrieve),
        _op("files.content", oa, "GET", "files/{id}/content", o.file_content),
        _op("files.delete", oa, "DELETE", "files/{id}", o.file_delete),
        _op("uploads.create", oa, "POST", "uploads", o.upload_create),
        _op("uploads.parts", oa, "POST", "uploads/{id}/parts", o.upload_part),
        _op("uploads.complete", oa, "POST", "uploads/{id}/complete", o.upload_complete),
        _op("uploads.cancel", oa, "POST", "uploads/{id}/cancel", o.upload_cancel),
        _op("batches.create", oa, "POST", "batches", o.batch_create),
        _op("batches.list", oa, "GET", "batches", o.batch_list),
        _op("batches.retrieve", oa, "GET", "batches/{id}", o.batch_retrieve),
        _op("batches.cancel", oa, "POST", "batches/{id}/cancel", o.batch_cancel),
        _op("vector_stores.create", oa, "POST", "vector_stores", o.vector_store_create),
        _op("vector_stores.list", oa, "GET", "vector_stores", o.vector_store_list),
        _op("vector_stores.retrieve", oa, "GET", "vector_stores/{id}", o.vector_store_retrieve),
        _op("vector_stores.delete", oa, "DELETE", "vector_stores/{id}", o.vector_store_delete),
        _op("conversations.create", oa, "POST", "conversations", o.conversation_create),
        _op("conversations.retrieve", oa, "GET", "conversations/{id}", o.conversation_retrieve),
        _op("conversations.delete", oa, "DELETE", "conversations/{id}", o.conversation_delete),
        _op("messages", an, "POST", "messages", a.messages, MessagesEvents),
        _op("messages.count_tokens", an, "POST", "messages/count_tokens", a.count_tokens_handler),
        _op("messages.batches.create", an, "POST", "messages/batches", a.batch_create),
        _op("messages.batches.list", an, "GET", "messages/batches", a.batch_list),
        _op("messages.batches.retrieve", an, "GET", "messages/batches/{id}", a.batch_retrieve),
        _op("messages.batches.delete", an, "DELETE", "messages/batches/{id}", a.batch_delete),
        _op("messages.batches.cancel", an, "POST", "messages/batches/{id}/cancel", a.batch_cancel),
        _op(
            "messages.batches.results", an, "GET", "messages/batches/{id}/results", a.batch_results
        ),
        _op("models.list", an, "GET", "models", a.models),
        _op("models.retrieve", an, "GET", "models/{id}", a.model),
        _op("files.create", an, "POST", "files", a.file_create),
        _op("files.list", an, "GET", "files", a.file_list),
        _op("files.retrieve", an, "GET", "files/{id}", a.file_retrieve),
        _op("files.content", an, "GET", "files/{id}/content", a.file_content),
        _op("files.delete", an, "DELETE", "files/{id}", a.file_delete),
    )


OPERATIONS: tuple[Operation, ...] = _table()
OPERATION_NAMES = frozenset(op.name for op in OPERATIONS)


def check_operation(operation: str | None) -> None:
    """Reject an operation name no endpoint has (a typo would never match a request)."""
    if operation is not None and operation not in OPERATION_NAMES:
        raise ValueError(f"unknown operation {operation!r}; one of {sorted(OPERATION_NAMES)}")


def match(
    method: str, path: str, prefer: Family, operations: tuple[Operation, ...] = OPERATIONS
) -> tuple[Operation, Mapping[str, str]] | None:
    """The operation for ``method`` and ``path`` (the part after ``v1/``), and its path
    parameters; rows of the ``prefer`` family are tried first."""
    ordered = sorted(operations, key=lambda op: op.family != prefer)
    for op in ordered:
        if op.method == method and (found := op.pattern.fullmatch(path)):
            return op, found.groupdict()
    return None


def chat_operation(family: Family) -> Operation:
    """The family's chat operation (Chat Completions / Messages)."""
    name = "chat.completions" if family == "openai" else "messages"
    return next(op for op in OPERATIONS if op.name == name)


def default_events(family: Family) -> EventsFactory:
    """The SSE format a :class:`Stream` uses on an endpoint that has none of its own."""
    return ChatEvents if family == "openai" else MessagesEvents
