"""The ``/_control`` HTTP API: script behaviours, group accounts, set model lists and read
what the fake received, from another process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .behaviours import behaviour_from_dict

if TYPE_CHECKING:
    from .server import FakeUpstream

__all__ = ["CONTROL_PREFIX", "handle_control"]

CONTROL_PREFIX = "/_control"


async def handle_control(upstream: FakeUpstream, request: web.Request) -> web.StreamResponse:
    """``POST reset | script | default | account | models``, ``GET requests | objects``."""
    action = request.path[len(CONTROL_PREFIX) :].strip("/")
    try:
        if request.method == "POST" and action == "reset":
            upstream.reset()
            return web.json_response({"ok": True})
        if request.method == "GET" and action == "requests":
            provider = request.query.get("provider")
            return web.json_response([r.to_dict() for r in upstream.requests(provider)])
        if request.method == "GET" and action == "objects":
            account = request.query.get("account")
            return web.json_response(
                [
                    {"id": o.id, "kind": o.kind, "account": o.account}
                    for o in upstream.objects(account)
                ]
            )
        if request.method == "POST" and action in ("script", "default", "account", "models"):
            data = await request.json()
            if not isinstance(data, dict) or not isinstance(data.get("provider"), str):
                raise ValueError('expected a JSON object with a "provider" string')
            provider = data["provider"]
            operation = data.get("operation")
            if operation is not None and not isinstance(operation, str):
                raise ValueError('"operation" must be a string')
            if action == "script":
                items = data.get("behaviours")
                if not isinstance(items, list):
                    raise ValueError('"behaviours" must be a list')
                behaviours = [behaviour_from_dict(b) for b in items]
                upstream.script(provider, *behaviours, operation=operation)
            elif action == "default":
                behaviour = behaviour_from_dict(data.get("behaviour"))
                upstream.set_default(provider, behaviour, operation=operation)
            elif action == "account":
                account = data.get("account")
                if not isinstance(account, str):
                    raise ValueError('"account" must be a string')
                upstream.set_account(provider, account)
            else:
                models = data.get("models")
                if not isinstance(models, list):
                    raise ValueError('"models" must be a list of strings')
                upstream.set_models(provider, models)
            return web.json_response({"ok": True})
    except ValueError as exc:  # includes json.JSONDecodeError
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(
        {"error": f"unknown control endpoint {request.method} {request.path}"}, status=404
    )
