"""List pages in each family's shape, with the real cursors (``after`` / ``after_id``)."""

from __future__ import annotations

from typing import Any

from .call import ApiError, Call

__all__ = ["anthropic_page", "openai_page"]

_DEFAULT_LIMIT = 20


def _window(items: list[dict[str, Any]], after: str | None, limit: int) -> list[dict[str, Any]]:
    if after is not None:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return items[: limit + 1]


def openai_page(
    call: Call, items: list[dict[str, Any]], *, default_order: str = "desc"
) -> dict[str, Any]:
    """``{"object": "list", "data", "first_id", "last_id", "has_more"}``; ``items`` oldest
    first, ordered by ``?order=`` (``asc`` / ``desc``), paged by ``?after=`` / ``?limit=``."""
    order = call.query.get("order", default_order)
    if order not in ("asc", "desc"):
        raise ApiError(400, f"Invalid value for 'order': {order!r}.", param="order")
    ordered = items if order == "asc" else items[::-1]
    limit = call.query_int("limit", _DEFAULT_LIMIT)
    window = _window(ordered, call.query.get("after"), limit)
    data = window[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0].get("id") if data else None,
        "last_id": data[-1].get("id") if data else None,
        "has_more": len(window) > limit,
    }


def anthropic_page(call: Call, items: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"data", "has_more", "first_id", "last_id"}``, newest first, paged by
    ``?after_id=`` / ``?before_id=`` / ``?limit=`` (1..1000, default 20)."""
    limit = call.query_int("limit", _DEFAULT_LIMIT)
    if not 1 <= limit <= 1000:
        raise ApiError(400, "limit: Input should be between 1 and 1000")
    ordered = items[::-1]
    before = call.query.get("before_id")
    if before is not None:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[: ids.index(before)][::-1] if before in ids else []
        window = _window(ordered, None, limit)
        data = window[:limit][::-1]
    else:
        window = _window(ordered, call.query.get("after_id"), limit)
        data = window[:limit]
    return {
        "data": data,
        "has_more": len(window) > limit,
        "first_id": data[0].get("id") if data else None,
        "last_id": data[-1].get("id") if data else None,
    }
