"""Shared fixtures: the fake upstream (one per session) and routers started per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fake_upstream import FakeUpstreamThread
from tests.routerserver import RouterServer

StartRouter = Callable[[dict[str, Any]], RouterServer]


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


@pytest.fixture
def fake(fake_upstream: FakeUpstreamThread) -> Iterator[FakeUpstreamThread]:
    """The session's fake upstream, with scripts and records cleared for this test."""
    fake_upstream.reset()
    yield fake_upstream
    fake_upstream.reset()


@pytest.fixture
def start_router() -> Iterator[StartRouter]:
    """Start a router for a config dict; every router started is stopped after the test."""
    servers: list[RouterServer] = []

    def start(config: dict[str, Any]) -> RouterServer:
        server = RouterServer(config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def provider(fake: FakeUpstreamThread) -> Callable[..., dict[str, Any]]:
    """A provider config entry on the fake upstream: ``provider("a", "openai", priority=2)``."""

    def make(name: str, family: str = "openai", **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "api_key": f"sk-test-{name}-secret",
            "base_url": fake.base_url(name, family),
            "timeout": 5,
            **fields,
        }

    return make
