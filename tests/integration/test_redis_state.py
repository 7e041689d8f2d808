"""RedisState against a real redis-server: two states in one loop stand for two processes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis

from llm_api_router.state.base import PROBE_CLAIM_LEASE
from llm_api_router.state.redis_state import RedisState
from tests.redisserver import RedisServer, dump_all

StartState = Callable[..., Awaitable[RedisState]]


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> float:
    """Poll every millisecond; the seconds it took.  Fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.001)
    return time.monotonic() - started


@pytest.fixture
async def states(redis_server: RedisServer) -> AsyncIterator[StartState]:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    async with AsyncExitStack() as stack:

        async def start(url: str = redis_server.url, **options: object) -> RedisState:
            state = RedisState(url, key_prefix=prefix, **options)  # type: ignore[arg-type]
            return await stack.enter_async_context(state)

        yield start


async def test_a_cooldown_reaches_the_other_process(states: StartState) -> None:
    one, two = await states(), await states()
    assert one.status == two.status == "ok"
    one.extend_cooldown("openai/a", time.monotonic() + 30)
    took = await until(lambda: two.cooldown_until("openai/a") > 0)
    assert took < 0.1
    assert two.cooldown_until("openai/a") == pytest.approx(one.cooldown_until("openai/a"), abs=0.05)
    # a shorter cooldown from the other never shortens it
    two.extend_cooldown("openai/a", time.monotonic() + 5)
    three = await states()  # starts later: learns it from the resync
    assert three.cooldown_until("openai/a") == pytest.approx(
        one.cooldown_until("openai/a"), abs=0.05
    )
    await asyncio.sleep(0.05)
    assert one.cooldown_until("openai/a") > time.monotonic() + 25
    assert set(three.cooldowns(time.monotonic())) == {"openai/a"}


async def test_one_probe_across_processes(states: StartState) -> None:
    one, two = await states(), await states()
    one.open_circuit("openai/a", time.monotonic() + 0.2)
    await until(lambda: two.circuit("openai/a") is not None)
    assert not two.claim_probe("openai/a", time.monotonic())

    def owner() -> str | None:
        circuit = one.circuit("openai/a")
        return None if circuit is None else circuit.probe_owner

    await until(
        lambda: owner() is not None
        and owner() == getattr(two.circuit("openai/a"), "probe_owner", None)
    )
    winner, loser = (one, two) if owner() == one.instance else (two, one)
    now = time.monotonic()
    assert not loser.claim_probe("openai/a", now)
    assert winner.claim_probe("openai/a", now)
    assert not winner.claim_probe("openai/a", now)  # one probe in flight, not two
    # the probe outlives its claim lease: it was extended when it started
    await asyncio.sleep(PROBE_CLAIM_LEASE + 0.1)
    assert not loser.claim_probe("openai/a", time.monotonic())
    winner.close_circuit("openai/a")
    await until(lambda: loser.circuit("openai/a") is None)


async def test_a_failed_probe_opens_the_circuit_everywhere(states: StartState) -> None:
    one, two = await states(), await states()
    one.open_circuit("anthropic/c", time.monotonic() + 0.05)
    await until(lambda: getattr(one.circuit("anthropic/c"), "probe_owner", None) is not None)
    await until(
        lambda: getattr(two.circuit("anthropic/c"), "probe_owner", None)
        == getattr(one.circuit("anthropic/c"), "probe_owner", None)
    )
    winner = one if one.probe_available("anthropic/c", time.monotonic()) else two
    other = two if winner is one else one
    assert winner.claim_probe("anthropic/c", time.monotonic())
    winner.open_circuit("anthropic/c", time.monotonic() + 30)
    await until(
        lambda: (getattr(other.circuit("anthropic/c"), "open_until", 0) or 0)
        > time.monotonic() + 20
    )
    assert not other.probe_available("anthropic/c", time.monotonic())


async def test_owner_records_and_sessions_are_shared(states: StartState) -> None:
    one, two = await states(), await states()
    one.record_owner("resp_abc", "org-a")
    one.record_session("claude-session-1", "anthropic/c")
    await until(lambda: two.owner("resp_abc") == "org-a")
    await until(lambda: two.session_provider("claude-session-1") == "anthropic/c")
    late = await states()  # loaded at connect
    assert late.owner("resp_abc") == "org-a"
    assert late.session_provider("claude-session-1") == "anthropic/c"
    assert late.owner("resp_other") is None


async def test_redis_down_serves_locally_then_resyncs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path).start()
    try:
        caplog.set_level(logging.INFO, "llm_api_router.state")
        async with (
            RedisState(server.url, key_prefix="down:") as one,
            RedisState(server.url, key_prefix="down:") as two,
        ):
            await down_and_back(server, one, two, caplog)
    finally:
        server.stop()


async def down_and_back(
    server: RedisServer, one: RedisState, two: RedisState, caplog: pytest.LogCaptureFixture
) -> None:
    server.stop()
    await until(lambda: one.status == "degraded" and two.status == "degraded")
    # every call still answers at once, from the local mirror
    started = time.monotonic()
    one.extend_cooldown("openai/a", time.monotonic() + 30)
    one.open_circuit("openai/b", time.monotonic() + 0.01)
    await asyncio.sleep(0.02)
    assert one.claim_probe("openai/b", time.monotonic())  # local decision while degraded
    one.record_owner("file-1", "org-a")
    assert one.cooldown_until("openai/a") > 0
    assert time.monotonic() - started < 0.05
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    await asyncio.sleep(0.3)  # reconnect attempts fail meanwhile: still one line each
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == len(warnings)
    assert len(warnings) == 2
    server.start()
    await until(lambda: one.status == "ok" and two.status == "ok", timeout=10)
    # what one learned while Redis was away reaches two after the reconnect
    await until(lambda: two.cooldown_until("openai/a") > 0)
    await until(lambda: two.owner("file-1") == "org-a")
    assert "connected to redis://127.0.0.1" in caplog.text


async def test_nothing_but_names_and_times_in_redis(
    states: StartState, redis_server: RedisServer
) -> None:
    one = await states()
    one.extend_cooldown("openai/a", time.monotonic() + 30)
    one.open_circuit("openai/b", time.monotonic() + 30)
    one.record_owner("resp_secret_id", "org-a")
    one.record_session("user-4711", "openai/a")
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        prefix = one._keys.prefix
        await until(lambda: len(list(client.scan_iter(match=prefix + "*"))) == 5)
        dump = dump_all(client, prefix + "*")
        assert "resp_secret_id" not in dump
        assert "user-4711" not in dump
        assert "org-a" in dump
        assert "openai/a" in dump
    finally:
        client.close()


async def test_a_full_queue_drops_changes_without_blocking(states: StartState) -> None:
    state = await states("redis://127.0.0.1:1/0", queue_size=2, timeout=0.05)
    assert state.status == "degraded"
    for index in range(10):
        state.extend_cooldown(f"openai/p{index}", time.monotonic() + 30)
    assert state.cooldown_until("openai/p9") > 0
