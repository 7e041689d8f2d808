"""Observability on the real server: one access-log line per request, /metrics, /health."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_api_router.fake_upstream import (
    Error,
    FakeUpstreamThread,
    Hang,
    Ok,
    Stream,
    overloaded,
    rate_limited,
)
from tests.conftest import StartRouter
from tests.routerprocess import router_process, wait_until
from tests.routerserver import RouterServer

ROOT = Path(__file__).resolve().parents[2]
ACCESS = "llm_api_router.access"

Provider = Callable[..., dict[str, Any]]

OPENAI = "/openai/chat/completions"
ANTHROPIC = "/anthropic/v1/messages"
OPENAI_BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
}
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "hi"}],
}
FAST = {"retry_backoff_base": 0.001, "retry_backoff_max": 0.001}


def two_by_two(provider: Provider, **settings: Any) -> dict[str, Any]:
    """openai: a (priority 1, one retry), b (2); anthropic: c (1), d (2); others no retry."""
    return {
        "openai": [provider("a", max_retries=1), provider("b", priority=2, max_retries=0)],
        "anthropic": [
            provider("c", "anthropic", max_retries=0),
            provider("d", "anthropic", priority=2, max_retries=0),
        ],
        "settings": {**FAST, **settings},
    }


# =============================================================================================
# Access log, in process
# =============================================================================================


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    caplog.set_level(logging.INFO)

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == ACCESS]

    return records


def one_record(
    records: Callable[[], list[logging.LogRecord]], request_id: str
) -> logging.LogRecord:
    """The access record of ``request_id``, waiting for it (streams log when they end)."""
    wait_until(lambda: any(getattr(r, "request_id", None) == request_id for r in records()))
    time.sleep(0.02)  # a duplicate would come right after
    found = [r for r in records() if getattr(r, "request_id", None) == request_id]
    assert len(found) == 1, [vars(r) for r in found]
    return found[0]


def check_attempts(record: logging.LogRecord, expected: list[tuple[str, str, int | None]]) -> None:
    attempts = record.attempts
    assert [(a["provider"], a["outcome"], a["status"]) for a in attempts] == expected
    for attempt in attempts:
        assert set(attempt) == {"provider", "outcome", "status", "latency_ms"}
        assert isinstance(attempt["latency_ms"], int | float)
        assert attempt["latency_ms"] >= 0
    assert sum(a["latency_ms"] for a in attempts) <= record.latency_ms + 1


def test_access_record_for_a_success(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    response = http.post(
        router.url + OPENAI, json=OPENAI_BODY, headers={"x-request-id": "obs-success-1"}
    )
    assert response.status_code == 200
    assert response.headers["x-router-request-id"] == "obs-success-1"
    record = one_record(access, "obs-success-1")
    assert record.levelno == logging.INFO
    assert record.family == "openai"
    assert record.model == "gpt-4o-mini"
    assert record.provider == "a"
    assert record.status == 200
    assert record.stream is False
    assert isinstance(record.latency_ms, int | float)
    assert record.latency_ms > 0
    check_attempts(record, [("a", "ok", 200)])
    assert getattr(record, "ttfb_ms", None) is None
    assert getattr(record, "stream_outcome", None) is None
    assert len(access()) == 1


def test_request_id_is_generated_when_absent(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    ids = []
    for path, body in ((OPENAI, OPENAI_BODY), (ANTHROPIC, ANTHROPIC_BODY), (OPENAI, {})):
        response = http.post(router.url + path, json=body)
        request_id = response.headers["x-router-request-id"]
        assert request_id
        ids.append(request_id)
        one_record(access, request_id)
    assert len(set(ids)) == 3
    assert len(access()) == 3


def test_upstream_request_id_does_not_replace_ours(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    response = http.post(router.url + OPENAI, json=OPENAI_BODY, headers={"x-request-id": "mine"})
    assert response.headers["x-router-request-id"] == "mine"
    # The upstream's own id is passed back separately and does not become the router's id.
    assert response.headers["x-request-id"].startswith("req_")
    assert one_record(access, "mine").request_id == "mine"


def test_access_record_for_a_fallback(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", rate_limited(retry_after=30))
    fake.script("c", overloaded())
    response = http.post(router.url + OPENAI, json=OPENAI_BODY, headers={"x-request-id": "fb-1"})
    assert response.headers["x-router-provider"] == "b"
    record = one_record(access, "fb-1")
    assert record.provider == "b"
    assert record.status == 200
    check_attempts(record, [("a", "rate_limited", 429), ("b", "ok", 200)])
    response = http.post(
        router.url + ANTHROPIC, json=ANTHROPIC_BODY, headers={"x-request-id": "fb-2"}
    )
    assert response.status_code == 200
    record = one_record(access, "fb-2")
    assert record.family == "anthropic"
    assert record.model == "claude-x"
    assert record.provider == "d"
    check_attempts(record, [("c", "overloaded", 529), ("d", "ok", 200)])


def test_access_record_for_a_retry(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", Error(500))
    response = http.post(router.url + OPENAI, json=OPENAI_BODY, headers={"x-request-id": "rt"})
    assert response.status_code == 200
    record = one_record(access, "rt")
    check_attempts(record, [("a", "server_error", 500), ("a", "ok", 200)])
    assert record.provider == "a"


@pytest.mark.parametrize(
    ("family", "path", "body"),
    [("openai", OPENAI, OPENAI_BODY), ("anthropic", ANTHROPIC, ANTHROPIC_BODY)],
)
def test_access_record_for_streams(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
    family: str,
    path: str,
    body: dict[str, Any],
) -> None:
    router = start_router(two_by_two(provider))
    first = "a" if family == "openai" else "c"
    stream_body = {**body, "stream": True}
    cases = [
        ("complete", None),
        ("cut", Stream(cut_after=2, interval=0.05)),
        ("upstream_error", Stream(error_at=2, interval=0.05)),
    ]
    for outcome, behaviour in cases:
        if behaviour is not None:
            fake.script(first, behaviour)
        request_id = f"stream-{family}-{outcome}"
        response = http.post(
            router.url + path, json=stream_body, headers={"x-request-id": request_id}
        )
        assert response.status_code == 200
        assert response.headers["x-router-request-id"] == request_id
        record = one_record(access, request_id)
        assert record.stream is True
        assert record.family == family
        assert record.provider == first
        assert record.status == 200
        assert record.stream_outcome == outcome
        assert isinstance(record.ttfb_ms, int | float)
        assert 0 <= record.ttfb_ms <= record.latency_ms
        check_attempts(record, [(first, "ok", 200)])


def test_client_leaving_a_waiting_request_is_logged_as_499(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", Hang(30))
    with httpx.Client(timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.post(router.url + OPENAI, json=OPENAI_BODY, headers={"x-request-id": "left"})
    # The router gives up on the upstream at once, and says so once.
    assert fake.wait_for_disconnect("a", timeout=1.0) is not None
    deadline = time.monotonic() + 2
    while not [r for r in access() if r.request_id == "left"] and time.monotonic() < deadline:
        time.sleep(0.02)
    record = one_record(access, "left")
    assert record.status == 499
    assert record.stream is False
    assert not hasattr(record, "stream_outcome")
    samples = scrape(http, router.url)
    assert value(samples, "llm_router_in_flight_requests", family="openai") == 0
    assert (
        value(samples, "llm_router_requests_total", family="openai", provider="none", status="499")
        == 1
    )


def test_stream_client_disconnect_is_logged_and_counted(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", Stream(interval=0.1, chunks=20))
    body = {**OPENAI_BODY, "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", router.url + OPENAI, json=body, headers={"x-request-id": "gone"}
        ) as response,
    ):
        assert response.status_code == 200
        next(response.iter_bytes())
    record = one_record(access, "gone")
    assert record.stream is True
    assert record.stream_outcome == "client_disconnected"
    assert record.status == 200
    samples = scrape(http, router.url)
    assert value(samples, "llm_router_in_flight_requests", family="openai") == 0
    outcome = "client_disconnected"
    assert (
        value(
            samples,
            "llm_router_stream_outcomes_total",
            family="openai",
            provider="a",
            outcome=outcome,
        )
        == 1
    )
    # The upstream stream was abandoned too, long before its 2 s natural end.
    assert fake.wait_for_disconnect("a", timeout=1.0) is not None


def test_access_record_for_a_stream_fallback_before_commit(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("c", Stream(error_at=0))
    body = {**ANTHROPIC_BODY, "stream": True}
    response = http.post(router.url + ANTHROPIC, json=body, headers={"x-request-id": "sfb"})
    assert response.status_code == 200
    assert response.headers["x-router-provider"] == "d"
    record = one_record(access, "sfb")
    assert record.provider == "d"
    assert record.stream_outcome == "complete"
    assert [(a["provider"], a["outcome"]) for a in record.attempts] == [
        ("c", "overloaded"),
        ("d", "ok"),
    ]


def test_stream_ttfb_reflects_the_first_byte(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", Stream(first_event_delay=0.2, interval=0.1, chunks=4))
    body = {**OPENAI_BODY, "stream": True}
    http.post(router.url + OPENAI, json=body, headers={"x-request-id": "ttfb"})
    record = one_record(access, "ttfb")
    assert record.ttfb_ms >= 200
    assert record.latency_ms >= record.ttfb_ms + 250  # three more events, 0.1 s apart


def test_access_record_for_errors(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    access: Callable[[], list[logging.LogRecord]],
) -> None:
    config = two_by_two(provider)
    config["openai"][0]["models"] = ["gpt-4o-mini"]
    config["openai"][1]["models"] = ["gpt-4o-mini"]
    config["auth"] = {"api_keys": ["obs-router-key-123456"]}
    router = start_router(config)
    key = {"x-api-key": "obs-router-key-123456"}

    def send(request_id: str, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", key), "x-request-id": request_id}
        return http.post(router.url + OPENAI, headers=headers, **kwargs)

    assert send("e401", json=OPENAI_BODY, headers={}).status_code == 401
    record = one_record(access, "e401")
    assert (record.status, record.provider, record.attempts) == (401, None, [])
    assert record.family == "openai"
    assert record.stream is False

    assert send("e400", content=b"{oops").status_code == 400
    record = one_record(access, "e400")
    assert (record.status, record.provider, record.attempts, record.model) == (400, None, [], None)

    assert send("e404", json={**OPENAI_BODY, "model": "nope"}).status_code == 404
    record = one_record(access, "e404")
    assert (record.status, record.model, record.attempts) == (404, "nope", [])

    fake.script("a", Error(500), Error(500))
    fake.script("b", Error(503))
    assert send("e502", json=OPENAI_BODY).status_code == 502
    record = one_record(access, "e502")
    assert record.status == 502
    check_attempts(
        record, [("a", "server_error", 500), ("a", "server_error", 500), ("b", "server_error", 503)]
    )

    fake.script("a", rate_limited(retry_after=7))
    fake.script("b", rate_limited(retry_after=9))
    response = send("e429", json={**OPENAI_BODY, "stream": True})
    assert response.status_code == 429
    record = one_record(access, "e429")
    assert record.status == 429
    assert record.stream is True
    check_attempts(record, [("a", "rate_limited", 429), ("b", "rate_limited", 429)])
    assert len(access()) == 5


def test_startup_logs_providers_with_priorities(
    fake: FakeUpstreamThread, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = two_by_two(provider)
    with RouterServer(config):
        pass
    startup = [r for r in caplog.records if r.name == "llm_api_router.server"]
    by_family = {getattr(r, "family", None): r for r in startup}
    assert by_family["openai"].providers == [["a", 1], ["b", 2]]
    assert by_family["anthropic"].providers == [["c", 1], ["d", 2]]
    assert "a (priority 1)" in by_family["openai"].getMessage()
    assert "b (priority 2)" in by_family["openai"].getMessage()
    for record in startup:
        assert "sk-test" not in record.getMessage()


# =============================================================================================
# Access log, in a real server process with --log-format json
# =============================================================================================


@pytest.fixture
def server_process(
    fake: FakeUpstreamThread, provider: Provider, http: httpx.Client, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """``python main.py --log-format json`` on a free port: (url, path of its stderr)."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(two_by_two(provider)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LLM_ROUTER_API_KEYS", None)
    env.pop("LLM_ROUTER_CONFIG", None)
    args = ["--config", str(config_path), "--log-format", "json"]
    with router_process(args, env, tmp_path, http, {"a", "b", "c", "d"}) as (url, _, err_path):
        yield url, err_path


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict)
        entries.append(entry)
    return entries


def test_json_access_log_of_a_server_process(
    fake: FakeUpstreamThread, http: httpx.Client, server_process: tuple[str, Path]
) -> None:
    url, err_path = server_process
    fake.script("a", rate_limited(retry_after=30))
    sent = [
        ("p-fallback", OPENAI, OPENAI_BODY, {}),
        ("p-ok", OPENAI, OPENAI_BODY, {}),  # a is cooling down: b answers at once
        ("p-anthropic", ANTHROPIC, ANTHROPIC_BODY, {}),
        ("p-stream", ANTHROPIC, {**ANTHROPIC_BODY, "stream": True}, {}),
        ("p-bad", OPENAI, {"model": "gpt-4o-mini"}, {}),
    ]
    for request_id, path, body, headers in sent:
        response = http.post(url + path, json=body, headers={**headers, "x-request-id": request_id})
        assert response.headers["x-router-request-id"] == request_id

    def access_entries() -> list[dict[str, Any]]:
        return [e for e in json_lines(err_path) if e.get("logger") == ACCESS]

    wait_until(lambda: len(access_entries()) >= len(sent))
    time.sleep(0.1)
    entries = json_lines(err_path)
    access = [e for e in entries if e.get("logger") == ACCESS]
    assert len(access) == len(sent)
    by_id = {e["request_id"]: e for e in access}
    assert set(by_id) == {s[0] for s in sent}
    for entry in access:
        for name in ("ts", "level", "message", "family", "model", "provider", "status"):
            assert name in entry, (name, entry)
        for name in ("latency_ms", "stream", "attempts"):
            assert name in entry, (name, entry)
        assert entry["level"] == "info"
        assert isinstance(entry["latency_ms"], int | float)
        assert isinstance(entry["stream"], bool)

    fallback = by_id["p-fallback"]
    assert fallback["family"] == "openai"
    assert fallback["model"] == "gpt-4o-mini"
    assert fallback["provider"] == "b"
    assert fallback["status"] == 200
    assert fallback["stream"] is False
    assert [(a["provider"], a["outcome"], a["status"]) for a in fallback["attempts"]] == [
        ("a", "rate_limited", 429),
        ("b", "ok", 200),
    ]
    assert all(isinstance(a["latency_ms"], int | float) for a in fallback["attempts"])

    ok = by_id["p-ok"]
    assert ok["provider"] == "b"
    assert [(a["provider"], a["outcome"]) for a in ok["attempts"]] == [("b", "ok")]

    anthropic = by_id["p-anthropic"]
    assert (anthropic["family"], anthropic["model"], anthropic["provider"]) == (
        "anthropic",
        "claude-x",
        "c",
    )

    stream = by_id["p-stream"]
    assert stream["stream"] is True
    assert stream["stream_outcome"] == "complete"
    assert 0 <= stream["ttfb_ms"] <= stream["latency_ms"]

    bad = by_id["p-bad"]
    assert bad["status"] == 400
    assert bad["provider"] is None
    assert bad["attempts"] == []

    # Start-up names every provider with its priority.
    startup = {
        e["family"]: e
        for e in entries
        if e.get("logger") == "llm_api_router.server" and "family" in e
    }
    assert startup["openai"]["providers"] == [["a", 1], ["b", 2]]
    assert startup["anthropic"]["providers"] == [["c", 1], ["d", 2]]
    assert "a (priority 1)" in startup["openai"]["message"]
    assert "d (priority 2)" in startup["anthropic"]["message"]


# =============================================================================================
# /metrics
# =============================================================================================

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: httpx.Client, url: str) -> Samples:
    response = http.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """``name`` summed over the label sets that include ``labels`` (e.g. every operation)."""
    return total(samples, name, **labels)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over every label set that includes ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_families_are_exposed(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    response = http.get(router.url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    types = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    expected = {
        "llm_router_requests": "counter",
        "llm_router_upstream_latency_seconds": "histogram",
        "llm_router_overhead_seconds": "histogram",
        "llm_router_fallbacks": "counter",
        "llm_router_retries": "counter",
        "llm_router_in_flight_requests": "gauge",
        "llm_router_provider_state": "gauge",
        "llm_router_stream_outcomes": "counter",
    }
    for name, kind in expected.items():
        assert types.get(name) == kind, (name, types.get(name))
    samples = scrape(http, router.url)
    # Every provider is in exactly one state from the start: healthy.
    for family, name in (("openai", "a"), ("openai", "b"), ("anthropic", "c")):
        assert (
            value(
                samples, "llm_router_provider_state", family=family, provider=name, state="healthy"
            )
            == 1
        )
        assert total(samples, "llm_router_provider_state", family=family, provider=name) == 1
    assert value(samples, "llm_router_in_flight_requests", family="openai") == 0


def test_metrics_count_requests_latency_and_overhead(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    before = scrape(http, router.url)
    for _ in range(3):
        assert http.post(router.url + OPENAI, json=OPENAI_BODY).status_code == 200
    assert http.post(router.url + ANTHROPIC, json=ANTHROPIC_BODY).status_code == 200
    after = scrape(http, router.url)
    requests = "llm_router_requests_total"
    assert delta(before, after, requests, family="openai", provider="a", status="200") == 3
    assert delta(before, after, requests, family="anthropic", provider="c", status="200") == 1
    latency = "llm_router_upstream_latency_seconds"
    assert delta(before, after, latency + "_count", family="openai", provider="a") == 3
    assert delta(before, after, latency + "_count", family="anthropic", provider="c") == 1
    assert value(after, latency + "_sum", family="openai", provider="a") > 0
    assert value(after, latency + "_bucket", family="openai", provider="a", le="+Inf") == value(
        after, latency + "_count", family="openai", provider="a"
    )
    overhead = "llm_router_overhead_seconds"
    assert delta(before, after, overhead + "_count", family="openai") == 3
    assert delta(before, after, overhead + "_count", family="anthropic") == 1
    assert value(after, overhead + "_sum", family="openai") >= 0
    assert value(after, "llm_router_in_flight_requests", family="openai") == 0
    assert value(after, "llm_router_in_flight_requests", family="anthropic") == 0


def test_metrics_fallback_and_provider_state_after_429(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    before = scrape(http, router.url)
    fake.script("a", rate_limited(retry_after=30))
    assert http.post(router.url + OPENAI, json=OPENAI_BODY).headers["x-router-provider"] == "b"
    fake.script("c", overloaded())
    assert http.post(router.url + ANTHROPIC, json=ANTHROPIC_BODY).status_code == 200
    after = scrape(http, router.url)
    fallbacks = "llm_router_fallbacks_total"
    assert delta(before, after, fallbacks, family="openai", reason="rate_limited") == 1
    assert delta(before, after, fallbacks, family="anthropic", reason="overloaded") == 1
    assert total(after, fallbacks) - total(before, fallbacks) == 2
    requests = "llm_router_requests_total"
    assert delta(before, after, requests, family="openai", provider="b", status="200") == 1
    assert delta(before, after, requests, family="openai", provider="a", status="200") == 0
    # Both providers' attempts are timed.
    latency = "llm_router_upstream_latency_seconds_count"
    assert delta(before, after, latency, family="openai", provider="a") == 1
    assert delta(before, after, latency, family="openai", provider="b") == 1
    state = "llm_router_provider_state"
    assert value(after, state, family="openai", provider="a", state="cooling_down") == 1
    assert value(after, state, family="openai", provider="a", state="healthy") == 0
    assert total(after, state, family="openai", provider="a") == 1
    assert value(after, state, family="openai", provider="b", state="healthy") == 1
    assert value(after, state, family="anthropic", provider="c", state="cooling_down") == 1
    left = value(after, "llm_router_provider_cooldown_seconds", family="openai", provider="a")
    assert 28 <= left <= 30


def test_metrics_retries(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    before = scrape(http, router.url)
    fake.script("a", Error(500))
    response = http.post(router.url + OPENAI, json=OPENAI_BODY)
    assert response.headers["x-router-provider"] == "a"
    assert response.headers["x-router-attempts"] == "2"
    after = scrape(http, router.url)
    retries = "llm_router_retries_total"
    assert delta(before, after, retries, family="openai", provider="a", reason="server_error") == 1
    assert total(after, "llm_router_fallbacks_total") == total(before, "llm_router_fallbacks_total")
    assert (
        delta(
            before,
            after,
            "llm_router_upstream_latency_seconds_count",
            family="openai",
            provider="a",
        )
        == 2
    )


def test_metrics_failed_and_rejected_requests(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    config = two_by_two(provider)
    config["openai"][0]["max_retries"] = 0
    router = start_router(config)
    before = scrape(http, router.url)
    fake.script("a", Error(500))
    fake.script("b", Error(502))
    assert http.post(router.url + OPENAI, json=OPENAI_BODY).status_code == 502
    assert http.post(router.url + OPENAI, content=b"{bad").status_code == 400
    after = scrape(http, router.url)
    requests = "llm_router_requests_total"
    assert (
        total(after, requests, family="openai", status="502")
        - total(before, requests, family="openai", status="502")
        == 1
    )
    assert (
        total(after, requests, family="openai", status="400")
        - total(before, requests, family="openai", status="400")
        == 1
    )
    fallbacks = "llm_router_fallbacks_total"
    assert delta(before, after, fallbacks, family="openai", reason="server_error") == 1


def test_metrics_stream_outcomes(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    before = scrape(http, router.url)
    body = {**OPENAI_BODY, "stream": True}
    assert http.post(router.url + OPENAI, json=body).status_code == 200
    fake.script("a", Stream(cut_after=2, interval=0.05))
    assert http.post(router.url + OPENAI, json=body).status_code == 200
    fake.script("c", Stream(error_at=2, interval=0.05))
    assert (
        http.post(router.url + ANTHROPIC, json={**ANTHROPIC_BODY, "stream": True}).status_code
        == 200
    )
    outcomes = "llm_router_stream_outcomes_total"

    def moved() -> bool:
        now = scrape(http, router.url)
        return total(now, outcomes) - total(before, outcomes) >= 3

    wait_until(moved)
    after = scrape(http, router.url)
    assert delta(before, after, outcomes, family="openai", provider="a", outcome="complete") == 1
    assert delta(before, after, outcomes, family="openai", provider="a", outcome="cut") == 1
    assert (
        delta(before, after, outcomes, family="anthropic", provider="c", outcome="upstream_error")
        == 1
    )
    assert total(after, outcomes) - total(before, outcomes) == 3
    assert value(after, "llm_router_in_flight_requests", family="openai") == 0


def test_metrics_in_flight_requests(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", Ok(delay=1.0))
    fake.script("c", Stream(first_event_delay=0.1, interval=0.25, chunks=4))
    results: list[int] = []

    def call(path: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=10) as client:
            results.append(client.post(router.url + path, json=body).status_code)

    threads = [
        threading.Thread(target=call, args=(OPENAI, OPENAI_BODY)),
        threading.Thread(target=call, args=(ANTHROPIC, {**ANTHROPIC_BODY, "stream": True})),
    ]
    for thread in threads:
        thread.start()
    gauge = "llm_router_in_flight_requests"
    try:
        wait_until(
            lambda: value(scrape(http, router.url), gauge, family="openai") == 1
            and value(scrape(http, router.url), gauge, family="anthropic") == 1
        )
    finally:
        for thread in threads:
            thread.join(10)
    assert results == [200, 200]
    wait_until(lambda: value(scrape(http, router.url), gauge, family="anthropic") == 0)
    samples = scrape(http, router.url)
    assert value(samples, gauge, family="openai") == 0
    assert value(samples, gauge, family="anthropic") == 0


def test_metrics_provider_state_circuit_open(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    config = two_by_two(provider, circuit_breaker_threshold=2, circuit_breaker_cooldown=45)
    router = start_router(config)
    fake.script("a", Error(500), Error(500))
    assert http.post(router.url + OPENAI, json=OPENAI_BODY).headers["x-router-provider"] == "b"
    samples = scrape(http, router.url)
    state = "llm_router_provider_state"
    assert value(samples, state, family="openai", provider="a", state="circuit_open") == 1
    assert total(samples, state, family="openai", provider="a") == 1
    left = value(samples, "llm_router_provider_cooldown_seconds", family="openai", provider="a")
    assert 43 <= left <= 45
    failures = value(samples, "llm_router_provider_recent_failures", family="openai", provider="a")
    assert failures == 2


# =============================================================================================
# /health
# =============================================================================================


def rows_by_name(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for rows in health["providers"].values() for row in rows}


def test_health_lists_every_provider(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    response = http.get(router.url + "/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert [row["name"] for row in health["providers"]["openai"]] == ["a", "b"]
    assert [row["name"] for row in health["providers"]["anthropic"]] == ["c", "d"]
    for family, rows in health["providers"].items():
        for row in rows:
            assert row["family"] == family
            assert row["state"] == "healthy"
            assert row["cooldown_seconds_left"] == 0
            assert row["recent_failures"] == 0
            assert isinstance(row["priority"], int)
    assert [r["priority"] for r in health["providers"]["openai"]] == [1, 2]
    assert "sk-test" not in response.text


def test_health_after_429_shows_cooldown_close_to_retry_after(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", rate_limited(retry_after=30))
    fake.script("c", rate_limited(retry_after_ms=20_000))
    assert http.post(router.url + OPENAI, json=OPENAI_BODY).status_code == 200
    assert http.post(router.url + ANTHROPIC, json=ANTHROPIC_BODY).status_code == 200
    rows = rows_by_name(http.get(router.url + "/health").json())
    assert rows["a"]["state"] == "cooling_down"
    assert 28 <= rows["a"]["cooldown_seconds_left"] <= 30
    assert rows["a"]["recent_failures"] == 1
    assert rows["c"]["state"] == "cooling_down"
    assert 18 <= rows["c"]["cooldown_seconds_left"] <= 20
    assert rows["c"]["recent_failures"] == 1
    for name in ("b", "d"):
        assert rows[name]["state"] == "healthy"
        assert rows[name]["recent_failures"] == 0
    # Time passes: the seconds left go down.
    time.sleep(1.1)
    later = rows_by_name(http.get(router.url + "/health").json())
    assert later["a"]["cooldown_seconds_left"] <= rows["a"]["cooldown_seconds_left"] - 1


def test_health_after_auth_failure_and_server_errors(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    config = two_by_two(
        provider,
        auth_failure_cooldown=600,
        circuit_breaker_threshold=2,
        circuit_breaker_cooldown=45,
    )
    router = start_router(config)
    fake.script("c", Error(401))
    assert http.post(router.url + ANTHROPIC, json=ANTHROPIC_BODY).status_code == 200
    fake.script("a", Error(500), Error(500))
    assert http.post(router.url + OPENAI, json=OPENAI_BODY).status_code == 200
    rows = rows_by_name(http.get(router.url + "/health").json())
    assert rows["c"]["state"] == "cooling_down"
    assert 598 <= rows["c"]["cooldown_seconds_left"] <= 600
    assert rows["c"]["recent_failures"] == 1
    assert rows["a"]["state"] == "circuit_open"
    assert 43 <= rows["a"]["cooldown_seconds_left"] <= 45
    assert rows["a"]["recent_failures"] == 2


def test_health_agrees_with_metrics(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, http: httpx.Client
) -> None:
    router = start_router(two_by_two(provider))
    fake.script("a", rate_limited(retry_after=12))
    http.post(router.url + OPENAI, json=OPENAI_BODY)
    rows = rows_by_name(http.get(router.url + "/health").json())
    samples = scrape(http, router.url)
    for name, row in rows.items():
        family = row["family"]
        assert (
            value(
                samples,
                "llm_router_provider_state",
                family=family,
                provider=name,
                state=row["state"],
            )
            == 1
        )
        assert (
            value(samples, "llm_router_provider_recent_failures", family=family, provider=name)
            == row["recent_failures"]
        )


# =============================================================================================
# Access log of the routes that are not chat
# =============================================================================================


def test_every_request_gets_one_access_line(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, ACCESS)
    router = start_router(two_by_two(provider))
    sent = [
        ("GET", "/", "al-root", 200),
        ("GET", "/docs", "al-docs", 200),
        ("GET", "/openapi.json", "al-openapi", 200),
        ("GET", "/no/such/route", "al-404", 404),
        ("POST", "/", "al-405", 405),
        ("POST", OPENAI, "al-chat", 200),
        ("GET", "/health", "al-health", 200),
        ("GET", "/metrics", "al-metrics", 200),
    ]
    for method, path, request_id, status in sent:
        body = OPENAI_BODY if method == "POST" else None
        response = http.request(
            method, router.url + path, json=body, headers={"x-request-id": request_id}
        )
        assert response.status_code == status, path

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == ACCESS]

    for method, path, request_id, status in sent:
        record = one_record(records, request_id)
        assert record.status == status
        if path != OPENAI:
            assert record.getMessage() == f"{method} {path} -> {status}"
        expected = logging.DEBUG if path in ("/health", "/metrics") else logging.INFO
        assert record.levelno == expected, path
