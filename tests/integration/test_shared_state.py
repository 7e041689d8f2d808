"""Several router processes sharing provider state through a real Redis (SPEC section 11)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from llm_api_router.fake_upstream import Error, FakeUpstreamThread, Ok, rate_limited
from tests.redisserver import RedisServer, dump_all
from tests.routerprocess import router_process, wait_until

Provider = Callable[..., dict[str, Any]]

OPENAI = "/openai/chat/completions"
BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
FAST = {"retry_backoff_base": 0.001, "retry_backoff_max": 0.001}


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("LLM_ROUTER_API_KEYS", "LLM_ROUTER_CONFIG", "LLM_ROUTER_REDIS_URL"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def routers(
    config: dict[str, Any], count: int, tmp_path: Path, http: httpx.Client, *extra: str
) -> Iterator[list[tuple[str, Path]]]:
    """``count`` router processes on one config: [(url, stderr path)]."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    names = {p["name"] for family in ("openai", "anthropic") for p in config.get(family, [])}
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(count):
            workdir = tmp_path / f"router-{index}"
            workdir.mkdir()
            url, _, err = stack.enter_context(
                router_process(["--config", str(path), *extra], environment(), workdir, http, names)
            )
            started.append((url, err))
        yield started


def shared(redis_url: str) -> dict[str, str]:
    return {"redis_url": redis_url, "key_prefix": f"it-{uuid.uuid4().hex[:8]}:"}


def provider_row(http: httpx.Client, url: str, name: str) -> dict[str, Any]:
    rows = http.get(url + "/health").json()["providers"]["openai"]
    return next(row for row in rows if row["name"] == name)


def test_a_429_on_one_is_honoured_by_the_other_within_100_ms(
    fake: FakeUpstreamThread,
    provider: Provider,
    http: httpx.Client,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    config = {
        "openai": [provider("primary", max_retries=0), provider("backup", priority=2)],
        "settings": FAST,
        "state": shared(redis_server.url),
    }
    fake.script("primary", rate_limited(retry_after=30))
    with routers(config, 2, tmp_path, http) as [(one, _), (two, _)]:
        assert http.get(two + "/health").json()["shared_state"] == "ok"
        answer = http.post(one + OPENAI, json=BODY)
        learned = time.monotonic()
        assert answer.headers["x-router-provider"] == "backup"
        while provider_row(http, two, "primary")["state"] != "cooling_down":
            assert time.monotonic() - learned < 0.1, "the other process did not learn in 100 ms"
        took = time.monotonic() - learned
        assert took < 0.1
        row = provider_row(http, two, "primary")
        assert 25 < row["cooldown_seconds_left"] <= 30
        answer = http.post(two + OPENAI, json=BODY)
        assert answer.headers["x-router-provider"] == "backup"
        assert answer.headers["x-router-attempts"] == "1"
        assert len(fake.requests("primary")) == 1  # the fleet paid one discovery


def test_one_half_open_probe_across_two_processes(
    fake: FakeUpstreamThread,
    provider: Provider,
    http: httpx.Client,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    config = {
        "openai": [provider("primary", max_retries=0), provider("backup", priority=2)],
        "settings": {**FAST, "circuit_breaker_threshold": 1, "circuit_breaker_cooldown": 1.0},
        "state": shared(redis_server.url),
    }
    # the failure that opens the circuit, then a slow success: the probe stays in flight
    fake.script("primary", Error(500), Ok(delay=1.0))
    with routers(config, 2, tmp_path, http) as [(one, _), (two, _)]:
        assert http.post(one + OPENAI, json=BODY).headers["x-router-provider"] == "backup"
        wait_until(lambda: provider_row(http, two, "primary")["state"] == "circuit_open")
        wait_until(lambda: provider_row(http, two, "primary")["state"] == "half_open")
        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = []
            for index in range(12):
                url = (one, two)[index % 2]
                futures.append(pool.submit(http.post, url + OPENAI, json=BODY))
                time.sleep(0.05)
            statuses = [future.result().status_code for future in futures]
        assert statuses == [200] * 12
        assert len(fake.requests("primary")) == 2  # the opening failure and ONE probe
        for url in (one, two):  # the probe's success closed the circuit everywhere
            wait_until(lambda url=url: provider_row(http, url, "primary")["state"] == "healthy")


def test_redis_killed_mid_traffic_costs_no_request(
    fake: FakeUpstreamThread, provider: Provider, http: httpx.Client, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path).start()
    config = {
        "openai": [provider("primary", max_retries=0), provider("backup", priority=2)],
        "settings": FAST,
        "state": shared(server.url),
    }
    statuses: list[int] = []
    stop = threading.Event()
    try:
        with routers(config, 2, tmp_path, http) as started:
            urls = [url for url, _ in started]

            def traffic() -> None:
                with httpx.Client(timeout=10) as client:
                    while not stop.is_set():
                        for url in urls:
                            statuses.append(client.post(url + OPENAI, json=BODY).status_code)

            worker = threading.Thread(target=traffic)
            worker.start()
            try:
                wait_until(lambda: len(statuses) > 20)
                server.stop()
                for url in urls:
                    wait_until(
                        lambda url=url: http.get(url + "/health").json()["shared_state"]
                        == "degraded"
                    )
                during = len(statuses)
                wait_until(lambda: len(statuses) > during + 20)
                server.start()
                for url in urls:
                    wait_until(
                        lambda url=url: http.get(url + "/health").json()["shared_state"] == "ok",
                        timeout=15,
                    )
                after = len(statuses)
                wait_until(lambda: len(statuses) > after + 20)
            finally:
                stop.set()
                worker.join(10)
            assert statuses == [200] * len(statuses)
            # shared again: a 429 learned by one reaches the other
            fake.script("primary", rate_limited(retry_after=30))
            http.post(urls[0] + OPENAI, json=BODY)
            wait_until(lambda: provider_row(http, urls[1], "primary")["state"] == "cooling_down")
            for _, err in started:
                log = err.read_text()
                assert log.count("is unavailable") == 1  # one line for the outage
                assert "connected to redis://127.0.0.1" in log
    finally:
        server.stop()


def test_no_provider_key_reaches_redis(
    fake: FakeUpstreamThread,
    provider: Provider,
    http: httpx.Client,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    sentinels = [f"sk-SENTINEL-{uuid.uuid4().hex}" for _ in range(3)]
    state = shared(redis_server.url)
    config = {
        "openai": [
            {**provider("primary", max_retries=0), "api_key": sentinels[0]},
            {**provider("flaky", priority=2, max_retries=0), "api_key": sentinels[1]},
            {**provider("backup", priority=3), "api_key": sentinels[2]},
        ],
        "settings": {**FAST, "circuit_breaker_threshold": 1},
        "state": state,
    }
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    pubsub.subscribe(state["key_prefix"] + "events")
    try:
        fake.script("primary", rate_limited(retry_after=30))
        fake.script("flaky", Error(500))
        with routers(config, 2, tmp_path, http) as [(one, _), (two, _)]:
            assert http.post(one + OPENAI, json=BODY).headers["x-router-provider"] == "backup"
            wait_until(lambda: provider_row(http, two, "flaky")["state"] == "circuit_open")
            assert http.post(two + OPENAI, json=BODY).status_code == 200
        dump = dump_all(client, state["key_prefix"] + "*")
        events = []
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                events.append(repr(message))
        seen = dump + "\n".join(events)
        assert "openai/primary" in dump and "openai/flaky" in dump
        assert any("primary" in event for event in events), events
        for sentinel in sentinels:
            assert sentinel not in seen
            assert sentinel[10:30] not in seen
    finally:
        pubsub.close()
        client.close()


def metric_total(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_workers_metrics_count_every_worker(
    fake: FakeUpstreamThread, provider: Provider, http: httpx.Client, tmp_path: Path
) -> None:
    config = {"openai": [provider("primary")], "settings": FAST}
    close = {"connection": "close"}  # a new connection each time: any worker may take it
    with routers(config, 1, tmp_path, http, "--workers", "2") as [(url, err)]:
        pids = set()
        for _ in range(200):
            pids.add(http.get(url + "/health", headers=close).json()["worker"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "one worker took every connection"
        sent = 40
        for _ in range(sent):
            assert http.post(url + OPENAI, json=BODY, headers=close).status_code == 200
        for _ in range(6):  # whichever worker answers, it counts all of them
            text = http.get(url + "/metrics", headers=close).text
            assert metric_total(text, "llm_router_requests_total") == sent
        assert "each worker learns about provider failures alone" in err.read_text()
        assert http.get(url + "/health").json()["shared_state"] == "off"


@pytest.mark.parametrize("workers", ["1"])
def test_no_warning_for_one_worker(
    fake: FakeUpstreamThread, provider: Provider, http: httpx.Client, tmp_path: Path, workers: str
) -> None:
    config = {"openai": [provider("primary")]}
    with routers(config, 1, tmp_path, http, "--workers", workers) as [(url, err)]:
        assert http.post(url + OPENAI, json=BODY).status_code == 200
        assert "learns about provider failures alone" not in err.read_text()


def test_an_owner_record_made_through_one_routes_a_follow_up_on_the_other(
    fake: FakeUpstreamThread,
    provider: Provider,
    http: httpx.Client,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    config = {
        "openai": [
            provider("one", max_retries=0, account="A"),
            provider("two", max_retries=0, account="B", priority=2),
        ],
        "settings": FAST,
        "state": shared(redis_server.url),
    }
    with routers(config, 2, tmp_path, http) as [(first, _), (second, _)]:
        # Account A is briefly rate limited, so the file is made in account B ...
        fake.script("one", rate_limited(retry_after=0.05))
        created = http.post(
            first + "/openai/v1/files",
            files={"file": ("a.jsonl", b'{"x": 1}\n', "application/jsonl")},
            data={"purpose": "batch"},
        )
        assert created.status_code == 200 and created.headers["x-router-provider"] == "two"
        file_id = created.json()["id"]
        time.sleep(0.3)  # ... A's cooldown is over, and the record has crossed Redis.
        seen = len(fake.requests())
        read = http.get(second + f"/openai/v1/files/{file_id}")
        assert read.status_code == 200 and read.headers["x-router-provider"] == "two"
        # Straight to the owner: without the record, priority would ask A first (a 404).
        assert [r.provider for r in fake.requests()[seen:]] == ["two"]
