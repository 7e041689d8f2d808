"""accesslog.py: one line per request, probes at debug, a raising app logged as 500."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from llm_api_router.accesslog import AccessLogMiddleware
from llm_api_router.logs import ACCESS_LOGGER


def http_scope(
    path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": headers or []}


async def answer_204(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def explode(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom")


def run(app: AccessLogMiddleware, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


def test_one_info_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, ACCESS_LOGGER)
    sent = run(
        AccessLogMiddleware(answer_204), http_scope("/docs", headers=[(b"x-request-id", b"r-1")])
    )
    assert sent[0]["status"] == 204
    (record,) = access_records(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == "GET /docs -> 204"
    assert (record.method, record.path, record.status, record.request_id) == (
        "GET",
        "/docs",
        204,
        "r-1",
    )
    assert record.latency_ms >= 0


def test_probes_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, ACCESS_LOGGER)
    run(AccessLogMiddleware(answer_204), http_scope("/health"))
    run(AccessLogMiddleware(answer_204), http_scope("/metrics"))
    assert [r.levelno for r in access_records(caplog)] == [logging.DEBUG, logging.DEBUG]


def test_probes_cost_nothing_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    run(AccessLogMiddleware(answer_204), http_scope("/health"))
    assert access_records(caplog) == []


def test_an_exception_is_logged_as_500_and_propagates(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    with pytest.raises(RuntimeError):
        run(AccessLogMiddleware(explode), http_scope("/x", "POST", [(b"x-request-id", b"bad id!")]))
    (record,) = access_records(caplog)
    assert record.status == 500
    assert record.getMessage() == "POST /x -> 500"
    assert record.request_id != "bad id!"  # not a sane id: a generated one instead


def test_other_scopes_pass_through(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, ACCESS_LOGGER)
    seen: list[str] = []

    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    run(AccessLogMiddleware(lifespan_app), {"type": "lifespan"})
    assert seen == ["lifespan"]
    assert access_records(caplog) == []
