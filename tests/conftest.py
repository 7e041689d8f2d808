"""Shared fixtures: the fake upstream and a real Redis (one per session), routers per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from llm_api_router.fake_upstream import FakeUpstreamThread
from tests.redisserver import RedisServer
from tests.routerserver import RouterServer

StartRouter = Callable[[dict[str, Any]], RouterServer]


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (tests isolate themselves by key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake(fake_upstream: FakeUpstreamThread) -> Iterator[FakeUpstreamThread]:
    """The session's fake upstream, with scripts and records cleared for this test."""
    fake_upstream.reset()
    yield fake_upstream
    fake_upstream.reset()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One HTTP client per module: building an SSL context per client costs ~80 ms."""
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def _router_stopper() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="router-stop") as pool:
        yield pool


@pytest.fixture
def start_router(_router_stopper: ThreadPoolExecutor) -> Iterator[StartRouter]:
    """Start a router for a config dict; every router started is stopped after the test.

    Stopping happens in the background (uvicorn takes ~0.2 s to shut down and the suite
    starts hundreds of routers); the pool is joined at the end of the session.
    """
    servers: list[RouterServer] = []

    def start(config: dict[str, Any]) -> RouterServer:
        server = RouterServer(config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        _router_stopper.submit(server.stop)


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
