"""The model list a client sees: ``GET models`` and ``GET models/{id}`` (SPEC section 9).

It answers what a client may ask this router for, in the family's native list shape: the
client-facing names of every provider's ``models``, merged with the upstream list of the
providers that serve every name (those without ``models``, or with ``*``).  The upstream
list is fetched through the dispatcher (so with fallback) and cached briefly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from llm_api_router.config import ProviderConfig
from llm_api_router.dispatch import Dispatcher, Reply
from llm_api_router.errors import RouterError
from llm_api_router.families import ApiFamily, ChatRequest

__all__ = ["DEFAULT_CATALOG_TTL", "ModelCatalog"]

#: Seconds an upstream model list is reused.
DEFAULT_CATALOG_TTL = 60.0
#: Seconds before a failed upstream fetch is tried again.
_FAILED_TTL = 5.0
_ANTHROPIC_PAGE = 1000

Clock = Callable[[], float]


class ModelCatalog:
    """One family's model list; one instance per family, owned by the app's runtime."""

    def __init__(
        self,
        family: ApiFamily,
        dispatcher: Dispatcher,
        *,
        ttl: float = DEFAULT_CATALOG_TTL,
        clock: Clock = time.monotonic,
    ) -> None:
        self._family = family
        self._dispatcher = dispatcher
        self._ttl = ttl
        self._clock = clock
        self._cached: list[dict[str, Any]] | None = None
        self._expires = 0.0

    async def answer(
        self, path: str, query: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Status and native JSON body for ``models`` or ``models/{id}``."""
        entries = await self._entries(headers)
        family = self._family
        if path != "models":
            wanted = path.removeprefix("models/")
            for entry in entries:
                if entry["id"] == wanted:
                    return 200, orjson.dumps(entry)
            message = f"The model '{wanted}' does not exist or is not served by this router."
            return 404, family.error_body(404, message, code="model_not_found", param="model")
        if family.name == "anthropic":
            return 200, orjson.dumps(_anthropic_page(entries, parse_qs(query.decode("latin-1"))))
        return 200, orjson.dumps({"object": "list", "data": entries})

    async def _entries(self, headers: Mapping[str, str]) -> list[dict[str, Any]]:
        now = self._clock()
        if self._cached is None or now >= self._expires:
            upstream = await self._fetch(headers)
            self._cached = self._merge(upstream or [])
            self._expires = now + (self._ttl if upstream is not None else _FAILED_TTL)
        return self._cached

    def _merge(self, upstream: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        for provider, _ in self._dispatcher.providers:
            for name in _configured_names(provider):
                entries.setdefault(name, self._entry(name, provider))
        for item in upstream:
            model_id = item.get("id")
            if isinstance(model_id, str) and model_id not in entries:
                entries[model_id] = item
        return list(entries.values())

    def _entry(self, name: str, provider: ProviderConfig) -> dict[str, Any]:
        if self._family.name == "anthropic":
            return {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "1970-01-01T00:00:00Z",
            }
        return {"id": name, "object": "model", "created": 0, "owned_by": provider.name}

    async def _fetch(self, headers: Mapping[str, str]) -> list[dict[str, Any]] | None:
        """The upstream list of the providers that serve every name, or None."""
        if not any(_serves_every_name(p) for p, _ in self._dispatcher.providers):
            return []
        family = self._family
        query = f"?limit={_ANTHROPIC_PAGE}" if family.name == "anthropic" else ""
        operation = family.operations.find("GET", "models")
        request = ChatRequest(b"", None, None, False, False, True, operation, "GET", "models", "")
        try:
            reply = await self._dispatcher.dispatch(
                request, headers, query, eligible=_serves_every_name
            )
        except RouterError:
            return None
        if not isinstance(reply, Reply) or reply.status != 200:
            if not isinstance(reply, Reply):
                reply.relay.abort()
            return None
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return None
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return None
        return [item for item in items if isinstance(item, dict)]


def _serves_every_name(provider: ProviderConfig) -> bool:
    return provider.models is None or "*" in provider.models


def _configured_names(provider: ProviderConfig) -> list[str]:
    return [name for name in provider.models or () if name != "*"]


def _anthropic_page(entries: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    """Anthropic's paginated shape, honouring ``limit``, ``after_id`` and ``before_id``."""
    try:
        limit = max(1, min(1000, int(query.get("limit", ["20"])[0])))
    except ValueError:
        limit = 20
    ids = [entry["id"] for entry in entries]
    start, end = 0, len(entries)
    after = query.get("after_id", [None])[0]
    before = query.get("before_id", [None])[0]
    if after in ids:
        start = ids.index(after) + 1
    if before in ids:
        end = ids.index(before)
        start = max(start, end - limit)
    page = entries[start:end][:limit]
    return {
        "data": page,
        "has_more": start + len(page) < end,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }
