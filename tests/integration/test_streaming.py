"""Streaming through the real router (SPEC section 5) against the fault-injecting fake upstream.

Relay without buffering, the commit point (fallback before the first byte), faults after the
commit (cut, stall, error event), missing ``[DONE]``, unparsable events, per-chunk and
first-token timeouts, client disconnects and usage chunks -- through both official SDKs
(``max_retries=0``) and raw HTTP on every route.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_api_router.fake_upstream import (
    Behaviour,
    Drop,
    Error,
    FakeUpstreamThread,
    Hang,
    Raw,
    Stream,
    overloaded,
    rate_limited,
)
from tests.conftest import StartRouter
from tests.integration.stream_helpers import (
    ANTHROPIC_MODEL,
    ANTHROPIC_ROUTES,
    MAX_TOKENS,
    MESSAGES,
    OPENAI_MODEL,
    OPENAI_ROUTES,
    ROUTES,
    RawStream,
    Timed,
    anthropic_client,
    closed_port,
    consume_anthropic_events,
    consume_anthropic_text,
    consume_openai,
    openai_client,
    provider_health,
    raw_stream,
    split_text,
    stream_body,
)
from tests.routerserver import RouterServer

ProviderFactory = Callable[..., dict[str, Any]]

TEXT = "one two three four five six"
SSE_TYPE = "text/event-stream; charset=utf-8"
ANTHROPIC_APIS = ("messages.stream", "messages.create")
ROUTE_IDS = [path for _, path in ROUTES]

#: Slack for timing assertions on a loaded machine (seconds).
SLACK = 1.0


def run_openai(client: openai.OpenAI, into: Timed) -> Any:
    """Stream a chat completion through the OpenAI SDK into ``into``; the response headers."""
    with client.chat.completions.create(
        model=OPENAI_MODEL, messages=MESSAGES, stream=True
    ) as stream:
        headers = stream.response.headers
        consume_openai(stream, into)
    return headers


def run_anthropic(client: anthropic.Anthropic, api: str, into: Timed) -> Any:
    """Stream a message through ``messages.stream`` or ``messages.create(stream=True)``."""
    if api == "messages.stream":
        with client.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES
        ) as stream:
            headers = stream.response.headers
            consume_anthropic_text(stream.text_stream, into)
            assert stream.get_final_text() == into.text
        return headers
    with client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=MESSAGES,
        stream=True,
    ) as events:
        headers = events.response.headers
        consume_anthropic_events(events, into)
    return headers


def assert_incremental(times: list[float], started: float) -> None:
    """Content spaced 0.2 s apart upstream arrived spread out, the first one early."""
    assert len(times) >= 5, times
    assert times[0] - started < 0.8, "the first content waited for later ones"
    assert times[-1] - times[0] > 0.7, "the content arrived in one burst (buffered)"
    gaps = sorted(b - a for a, b in pairwise(times))
    assert gaps[len(gaps) // 2] > 0.1, f"most content events arrived together: {gaps}"


def assert_complete(result: RawStream) -> None:
    """The raw stream ended cleanly with the family's natural terminator and no error."""
    assert result.error is None, repr(result.error)
    assert not result.errors, [e.raw for e in result.errors]
    if result.family == "openai":
        assert result.events[-1].is_done, result.body[-300:]
    else:
        assert result.events[-1].event == "message_stop", result.body[-300:]


def single(router_factory: StartRouter, family: str, *providers: dict[str, Any]) -> RouterServer:
    return router_factory({family: list(providers)})


# --------------------------------------------------------------------------- 1. relay


INCREMENTAL = Stream(text=TEXT, chunks=6, interval=0.2)


def test_openai_sdk_receives_chunks_as_they_arrive(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    router = single(start_router, "openai", provider("a"))
    fake.script("a", INCREMENTAL)
    into = Timed()
    with openai_client(router) as client:
        headers = run_openai(client, into)
    assert into.text == TEXT
    assert_incremental([t for t, _ in into.pieces], into.started)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-router-provider"] == "a"
    assert headers["x-router-attempts"] == "1"


@pytest.mark.parametrize("api", ANTHROPIC_APIS)
def test_anthropic_sdk_receives_chunks_as_they_arrive(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory, api: str
) -> None:
    router = single(start_router, "anthropic", provider("a", "anthropic"))
    fake.script("a", INCREMENTAL)
    into = Timed()
    with anthropic_client(router) as client:
        headers = run_anthropic(client, api, into)
    assert into.text == TEXT
    assert_incremental([t for t, _ in into.pieces], into.started)
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-router-provider"] == "a"
    assert headers["x-router-attempts"] == "1"


def test_raw_stream_is_relayed_incrementally_with_headers_on_every_route(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    subtests: pytest.Subtests,
) -> None:
    """Every route at once (in parallel, to save time); one subtest per route."""
    router = start_router({"openai": [provider("oa")], "anthropic": [provider("an", "anthropic")]})
    fake.script("oa", INCREMENTAL, INCREMENTAL)
    fake.script("an", INCREMENTAL, INCREMENTAL)
    with ThreadPoolExecutor(max_workers=len(ROUTES)) as pool:
        futures = {path: pool.submit(raw_stream, router, family, path) for family, path in ROUTES}
        results = {path: future.result() for path, future in futures.items()}
    for family, path in ROUTES:
        with subtests.test(route=path):
            result = results[path]
            name = "oa" if family == "openai" else "an"
            assert result.status == 200
            assert result.headers["content-type"].startswith("text/event-stream")
            assert result.headers["x-router-provider"] == name
            assert result.headers["x-router-attempts"] == "1"
            upstream_id = "x-request-id" if family == "openai" else "request-id"
            assert result.headers.get(upstream_id, "").startswith("req_"), "upstream request id"
            assert result.text == TEXT
            assert_complete(result)
            assert_incremental([e.at for e in result.contents], result.started)
    for name, family in (("oa", "openai"), ("an", "anthropic")):
        sent = fake.requests(name)
        assert [r.json for r in sent] == [stream_body(family)] * 2, "the body is forwarded as is"


# --------------------------------------------------------------------------- 2. before commit


@dataclass(frozen=True)
class PreCommit:
    """A fault of provider "a" before anything was relayed; "b" (priority 2) answers."""

    behaviour: Behaviour | None  # None: nothing listens at a's address
    max_retries: int
    a_attempts: int  # attempts the router makes on "a" in this request
    cooling: bool  # rate-limit style (cooldown) rather than a circuit-breaker failure


OPENAI_PRE_COMMIT = {
    "429": PreCommit(rate_limited(retry_after=30), 2, 1, cooling=True),
    "500-retried": PreCommit(Error(500), 2, 3, cooling=False),
    "drop": PreCommit(Drop(), 1, 2, cooling=False),
    "refused": PreCommit(None, 1, 2, cooling=False),
    "hang-timeout": PreCommit(Hang(), 2, 1, cooling=False),
    "silent-after-headers": PreCommit(Stream(first_event_delay=30), 2, 1, cooling=False),
    "empty-200-stream": PreCommit(Raw(200, b"", content_type=SSE_TYPE), 1, 2, cooling=False),
    "error-first-event": PreCommit(
        Stream(error_at=0, error_type="server_error", error_message="boom"), 1, 2, cooling=False
    ),
}
ANTHROPIC_PRE_COMMIT = {
    "429": PreCommit(rate_limited(retry_after=30), 2, 1, cooling=True),
    "529-overloaded": PreCommit(overloaded(), 2, 1, cooling=True),
    "500-retried": PreCommit(Error(500), 2, 3, cooling=False),
    "drop": PreCommit(Drop(), 1, 2, cooling=False),
    "hang-timeout": PreCommit(Hang(), 2, 1, cooling=False),
    "overloaded-first-event": PreCommit(Stream(error_at=0), 2, 1, cooling=True),
    "api-error-first-event": PreCommit(
        Stream(error_at=0, error_type="api_error", error_message="Internal"), 1, 2, cooling=False
    ),
}


def start_pre_commit(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    case: PreCommit,
) -> RouterServer:
    a = provider("a", family, timeout=1, max_retries=case.max_retries)
    if case.behaviour is None:
        a["base_url"] = f"http://127.0.0.1:{closed_port()}" + ("/v1" if family == "openai" else "")
    else:
        fake.set_default("a", case.behaviour)
    fake.script("b", Stream(text=TEXT, chunks=3))
    return start_router(
        {
            family: [a, provider("b", family, priority=2)],
            "settings": {"retry_backoff_base": 0.02},  # retries still happen, just quickly
        }
    )


def check_pre_commit(
    fake: FakeUpstreamThread,
    router: RouterServer,
    family: str,
    case: PreCommit,
    headers: Any,
    elapsed: float,
) -> None:
    assert headers["x-router-provider"] == "b"
    assert headers["x-router-attempts"] == str(case.a_attempts + 1)
    assert headers["content-type"].startswith("text/event-stream")
    if case.behaviour is not None:
        assert len(fake.requests("a")) == case.a_attempts
    assert len(fake.requests("b")) == 1
    assert elapsed < 1 + 2 * SLACK  # a timeout costs one `timeout` (1 s), never more
    health = provider_health(router, family, "a")
    if case.cooling:
        assert health["state"] == "cooling_down", health
        assert health["cooldown_seconds_left"] > 1, health
        assert health["recent_failures"] >= 1, health
    else:
        assert health["recent_failures"] == case.a_attempts, health
        assert health["consecutive_failures"] == case.a_attempts, health
        assert health["last_failure"], health
    assert provider_health(router, family, "b")["recent_failures"] == 0


@pytest.mark.parametrize("case", OPENAI_PRE_COMMIT.values(), ids=OPENAI_PRE_COMMIT.keys())
def test_openai_sdk_stream_falls_back_before_commit(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    case: PreCommit,
) -> None:
    router = start_pre_commit(fake, start_router, provider, "openai", case)
    into = Timed()
    with openai_client(router) as client:
        headers = run_openai(client, into)
    assert into.text == TEXT
    check_pre_commit(fake, router, "openai", case, headers, into.elapsed)


@pytest.mark.parametrize("case", ANTHROPIC_PRE_COMMIT.values(), ids=ANTHROPIC_PRE_COMMIT.keys())
def test_anthropic_sdk_stream_falls_back_before_commit(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    case: PreCommit,
) -> None:
    router = start_pre_commit(fake, start_router, provider, "anthropic", case)
    into = Timed()
    with anthropic_client(router) as client:
        headers = run_anthropic(client, "messages.stream", into)
    assert into.text == TEXT
    check_pre_commit(fake, router, "anthropic", case, headers, into.elapsed)


@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_raw_error_as_first_event_falls_back_invisibly(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
) -> None:
    router = single(
        start_router,
        family,
        provider("a", family, max_retries=0),
        provider("b", family, priority=2),
    )
    fake.script("a", Stream(error_at=0))
    result = raw_stream(router, family, path)
    assert result.status == 200
    assert result.headers["x-router-provider"] == "b"
    assert result.headers["x-router-attempts"] == "2"
    assert result.text == "Hello from b"
    assert "Overloaded" not in result.body, "a's error leaked into the committed stream"
    assert_complete(result)
    assert provider_health(router, family, "a")["recent_failures"] == 1


@pytest.mark.parametrize(("family", "path"), [OPENAI_ROUTES[0], ANTHROPIC_ROUTES[1]])
def test_raw_all_providers_fail_before_commit_gives_plain_error(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
) -> None:
    router = single(
        start_router,
        family,
        provider("a", family, max_retries=0),
        provider("b", family, priority=2, max_retries=0),
    )
    fake.set_default("a", Error(500))
    fake.set_default("b", Stream(error_at=0, error_type="api_error", error_message="down"))
    result = raw_stream(router, family, path)
    assert result.status == 502
    assert result.headers["content-type"].startswith("application/json")
    assert result.headers["x-router-attempts"] == "2"
    assert "sk-test" not in result.body


def test_openai_stream_failures_open_the_circuit(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    router = start_router(
        {
            "openai": [provider("a", max_retries=1), provider("b", priority=2)],
            "settings": {"circuit_breaker_threshold": 2, "circuit_breaker_cooldown": 60},
        }
    )
    fake.set_default("a", Stream(error_at=0, error_type="server_error", error_message="boom"))
    with openai_client(router) as client:
        first, second = Timed(), Timed()
        run_openai(client, first)
        assert provider_health(router, "openai", "a")["state"] == "circuit_open"
        headers = run_openai(client, second)
    assert second.text == "Hello from b"
    assert headers["x-router-attempts"] == "1", "an open circuit is skipped"
    assert len(fake.requests("a")) == 2


# --------------------------------------------------------------------------- 3. after commit

POST_COMMIT: dict[str, dict[str, Any]] = {
    "cut": {"cut_after": 2},
    "stall": {"stall_after": 2},
    "error-event": {"error_at": 2},
}
PREFIX = "".join(split_text(TEXT, 6)[:2])


def start_post_commit(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    fault: str,
) -> RouterServer:
    # spaced, so that the first read the router makes holds no more than the first content
    fake.script("a", Stream(text=TEXT, chunks=6, interval=0.1, **POST_COMMIT[fault]))
    return single(
        start_router,
        family,
        provider("a", family, timeout=1, max_retries=0),
        provider("b", family, priority=2),
    )


def check_post_commit(
    fake: FakeUpstreamThread, router: RouterServer, family: str, fault: str, into: Timed
) -> None:
    assert into.text == PREFIX, "the content before the fault was relayed"
    assert into.ended, "the SDK call never started"
    bound = (1 + SLACK) if fault == "stall" else SLACK
    assert into.elapsed < bound + 0.5, f"ended after {into.elapsed:.2f} s"
    if fault == "stall":
        silent = into.ended - into.pieces[-1][0]
        assert 0.8 < silent < 1 + SLACK, f"stall ended after {silent:.2f} s (timeout 1 s)"
    assert fake.requests("b") == [], "no fallback once the stream is committed"
    health = provider_health(router, family, "a")
    assert health["recent_failures"] == 1, health


@pytest.mark.parametrize("fault", POST_COMMIT)
def test_openai_sdk_raises_on_fault_after_commit(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory, fault: str
) -> None:
    router = start_post_commit(fake, start_router, provider, "openai", fault)
    into = Timed()
    with openai_client(router) as client, pytest.raises(openai.APIError) as info:
        run_openai(client, into)
    assert not isinstance(info.value, openai.APIConnectionError), repr(info.value)
    assert isinstance(info.value.body, dict) and info.value.body.get("message"), info.value.body
    if fault == "error-event":
        assert info.value.message == "Overloaded"
    check_post_commit(fake, router, "openai", fault, into)


@pytest.mark.parametrize(
    ("fault", "api"),
    [
        (fault, api)
        for fault in POST_COMMIT
        for api in ANTHROPIC_APIS
        if fault != "stall" or api == "messages.stream"  # a stall costs `timeout`: once is enough
    ],
)
def test_anthropic_sdk_raises_on_fault_after_commit(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    fault: str,
    api: str,
) -> None:
    router = start_post_commit(fake, start_router, provider, "anthropic", fault)
    into = Timed()
    with anthropic_client(router) as client, pytest.raises(anthropic.APIStatusError) as info:
        run_anthropic(client, api, into)
    body = info.value.body
    assert isinstance(body, dict) and body.get("type") == "error", body
    if fault == "error-event":
        assert body["error"]["type"] == "overloaded_error"
    check_post_commit(fake, router, "anthropic", fault, into)


@pytest.mark.parametrize(
    ("family", "path", "fault"),
    [
        pytest.param(family, path, fault, id=f"{path}-{fault}")
        for family, path in ROUTES
        for fault in POST_COMMIT
        # a stall costs `timeout`: on one route of each family
        if fault != "stall" or path in (OPENAI_ROUTES[0][1], ANTHROPIC_ROUTES[1][1])
    ],
)
def test_raw_fault_after_commit_ends_with_native_error_event(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
    fault: str,
) -> None:
    router = start_post_commit(fake, start_router, provider, family, fault)
    result = raw_stream(router, family, path)
    assert result.status == 200
    assert result.headers["x-router-provider"] == "a"
    assert result.error is None, f"the stream was not closed cleanly: {result.error!r}"
    assert result.text == PREFIX
    assert result.errors, f"no native error event: {result.body[-400:]!r}"
    assert result.events[-1].is_error(family), "the error event is the last event"
    if family == "openai":
        assert not result.has_done, "a cut stream must not end with [DONE]"
        assert not any(
            c.get("finish_reason")
            for e in result.events
            if isinstance(e.json(), dict)
            for c in e.json().get("choices") or []
        )
    else:
        assert not result.named("message_stop"), "a cut stream must not end with message_stop"
    if fault == "error-event":
        assert result.errors[-1].json()["error"]["type"] == "overloaded_error"
    if fault == "stall":
        silent = result.events[-1].at - result.contents[-1].at
        assert 0.8 < silent < 1 + SLACK, f"stall ended after {silent:.2f} s (timeout 1 s)"
    assert result.elapsed < 1 + 2 * SLACK
    assert fake.requests("b") == []
    assert provider_health(router, family, "a")["recent_failures"] == 1


# --------------------------------------------------------------------------- 4. missing [DONE]

UNTERMINATED: dict[str, dict[str, Any]] = {
    "omit_done": {"omit_done": True},
    "omit_done+keep_open": {"omit_done": True, "keep_open": True},
    "done+keep_open": {"keep_open": True},
}


@pytest.mark.parametrize("variant", UNTERMINATED)
def test_openai_sdk_stream_without_done_completes_promptly(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory, variant: str
) -> None:
    router = single(start_router, "openai", provider("a"))
    fake.script("a", Stream(text=TEXT, chunks=3, **UNTERMINATED[variant]))
    into = Timed()
    with openai_client(router) as client:
        run_openai(client, into)
    assert into.text == TEXT
    assert into.elapsed < 1.5, f"took {into.elapsed:.2f} s"
    assert provider_health(router, "openai", "a")["recent_failures"] == 0


@pytest.mark.parametrize(
    ("family", "path", "variant"),
    [
        pytest.param(*OPENAI_ROUTES[i % 2], variant, id=f"{OPENAI_ROUTES[i % 2][1]}-{variant}")
        for i, variant in enumerate(UNTERMINATED)
    ],
)
def test_raw_stream_without_done_gets_done(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
    variant: str,
) -> None:
    router = single(start_router, family, provider("a"))
    fake.script("a", Stream(text=TEXT, chunks=3, **UNTERMINATED[variant]))
    result = raw_stream(router, family, path)
    assert result.text == TEXT
    assert_complete(result)
    assert result.body.count("data: [DONE]") == 1
    assert result.elapsed < 1.5, f"took {result.elapsed:.2f} s"
    if "keep_open" in variant:
        assert fake.wait_for_disconnect("a", timeout=2) is not None, "upstream left open"


@pytest.mark.parametrize(("family", "path"), ANTHROPIC_ROUTES, ids=[p for _, p in ANTHROPIC_ROUTES])
def test_raw_anthropic_stream_kept_open_after_message_stop_completes(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
) -> None:
    router = single(start_router, family, provider("a", family))
    fake.script("a", Stream(text=TEXT, chunks=3, keep_open=True))
    result = raw_stream(router, family, path)
    assert result.text == TEXT
    assert_complete(result)
    assert result.elapsed < 1.5, f"took {result.elapsed:.2f} s"
    assert fake.wait_for_disconnect("a", timeout=2) is not None, "upstream left open"


def test_anthropic_sdk_stream_kept_open_completes(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    router = single(start_router, "anthropic", provider("a", "anthropic"))
    fake.script("a", Stream(text=TEXT, chunks=3, keep_open=True))
    into = Timed()
    with anthropic_client(router) as client:
        run_anthropic(client, "messages.stream", into)
    assert into.text == TEXT
    assert into.elapsed < 1.5, f"took {into.elapsed:.2f} s"


# --------------------------------------------------------------------------- usage chunk


@pytest.mark.parametrize("variant", ["done", "omit_done+keep_open"])
def test_openai_sdk_include_usage_chunk_gets_through(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory, variant: str
) -> None:
    router = single(start_router, "openai", provider("a"))
    extra: dict[str, Any] = {"omit_done": True, "keep_open": True} if variant != "done" else {}
    fake.script("a", Stream(text=TEXT, chunks=3, **extra))
    started = time.monotonic()
    with openai_client(router) as client:
        stream = client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)
    elapsed = time.monotonic() - started
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens > 0
    assert elapsed < 1.5, f"took {elapsed:.2f} s"
    (sent,) = fake.requests("a")
    assert sent.json["stream_options"] == {"include_usage": True}


# --------------------------------------------------------------------------- 5. malformed


@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_raw_malformed_event_is_relayed_and_stream_completes(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
) -> None:
    router = single(start_router, family, provider("a", family))
    fake.script("a", Stream(text=TEXT, chunks=4, malformed_at=2))
    result = raw_stream(router, family, path)
    assert result.status == 200
    bad = [e for e in result.events if e.data == "{this is not json"]
    assert len(bad) == 1, result.body
    if family == "anthropic":
        assert bad[0].event == "content_block_delta"
    assert result.text == TEXT
    assert_complete(result)
    assert provider_health(router, family, "a")["recent_failures"] == 0


# --------------------------------------------------------------------------- 6. disconnect

UPSTREAM_STATES: dict[str, Behaviour] = {
    "flowing": Stream(text=TEXT * 4, chunks=30, interval=0.2),
    "stalled": Stream(text=TEXT, chunks=6, stall_after=1),
}


def check_disconnect_seen(
    fake: FakeUpstreamThread, router: RouterServer, family: str, closed_at: float
) -> None:
    record = fake.wait_for_disconnect("a", timeout=2)
    assert record is not None, "the router did not close the upstream request"
    assert record.disconnected_at is not None
    lag = record.disconnected_at - closed_at
    assert lag < 1.0, f"the upstream was closed {lag:.2f} s after the client left"
    assert not record.completed
    # a client leaving is not the provider's fault
    assert provider_health(router, family, "a")["recent_failures"] == 0


@pytest.mark.parametrize("state", UPSTREAM_STATES)
@pytest.mark.parametrize(("family", "path"), [OPENAI_ROUTES[0], ANTHROPIC_ROUTES[1]])
def test_raw_client_disconnect_closes_upstream(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
    state: str,
) -> None:
    router = single(start_router, family, provider("a", family))
    fake.script("a", UPSTREAM_STATES[state])
    result = raw_stream(router, family, path, stop_after_contents=1)
    assert result.status == 200
    assert len(result.contents) == 1
    check_disconnect_seen(fake, router, family, result.ended)


@pytest.mark.parametrize("state", UPSTREAM_STATES)
def test_openai_sdk_close_closes_upstream(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory, state: str
) -> None:
    router = single(start_router, "openai", provider("a"))
    fake.script("a", UPSTREAM_STATES[state])
    with openai_client(router) as client:
        stream = client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        stream.close()
        closed_at = time.monotonic()
        check_disconnect_seen(fake, router, "openai", closed_at)


@pytest.mark.parametrize("api", ANTHROPIC_APIS)
def test_anthropic_sdk_close_closes_upstream(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory, api: str
) -> None:
    router = single(start_router, "anthropic", provider("a", "anthropic"))
    fake.script("a", UPSTREAM_STATES["stalled" if api == "messages.stream" else "flowing"])
    with anthropic_client(router) as client:
        if api == "messages.stream":
            with client.messages.stream(
                model=ANTHROPIC_MODEL,
                max_tokens=MAX_TOKENS,
                messages=MESSAGES,
            ) as stream:
                assert next(iter(stream.text_stream))
        else:
            events = client.messages.create(
                model=ANTHROPIC_MODEL,
                max_tokens=MAX_TOKENS,
                messages=MESSAGES,
                stream=True,
            )
            for event in events:
                if event.type == "content_block_delta":
                    break
            events.close()
        closed_at = time.monotonic()
        check_disconnect_seen(fake, router, "anthropic", closed_at)


# --------------------------------------------------------------------------- 7. timeouts


def test_timeout_bounds_each_chunk_not_the_whole_stream(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    """10 chunks 0.3 s apart with `timeout` 1 s complete (OpenAI SDK and raw Anthropic, run
    side by side to save time)."""
    router = start_router(
        {
            "openai": [provider("oa", timeout=1)],
            "anthropic": [provider("an", "anthropic", timeout=1)],
        }
    )
    slow = Stream(text=TEXT, chunks=10, interval=0.3)
    fake.script("oa", slow)
    fake.script("an", slow)
    into = Timed()

    def openai_side() -> None:
        with openai_client(router) as client:
            run_openai(client, into)

    with ThreadPoolExecutor(max_workers=2) as pool:
        openai_done = pool.submit(openai_side)
        raw = pool.submit(raw_stream, router, "anthropic", "/anthropic/v1/messages").result()
        openai_done.result()
    assert into.text == TEXT
    assert into.elapsed > 2.5  # longer than `timeout`, and complete
    assert raw.text == TEXT
    assert_complete(raw)
    assert raw.elapsed > 2.5
    assert provider_health(router, "openai", "oa")["recent_failures"] == 0
    assert provider_health(router, "anthropic", "an")["recent_failures"] == 0


# --------------------------------------------------------------------------- 8. first token


def start_first_token(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    delay: float,
) -> RouterServer:
    fake.script("a", Stream(text=TEXT, chunks=3, first_event_delay=delay))
    return single(
        start_router,
        family,
        provider("a", family, timeout=5, first_token_timeout=0.5, max_retries=2),
        provider("b", family, priority=2),
    )


def check_first_token_fallback(
    fake: FakeUpstreamThread, router: RouterServer, family: str, headers: Any, elapsed: float
) -> None:
    assert headers["x-router-provider"] == "b"
    assert headers["x-router-attempts"] == "2"
    assert 0.4 < elapsed < 0.5 + SLACK, f"took {elapsed:.2f} s (first_token_timeout 0.5 s)"
    assert len(fake.requests("a")) == 1, "a late provider is not retried"
    assert provider_health(router, family, "a")["recent_failures"] == 1


def test_openai_sdk_first_token_timeout_moves_on(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    router = start_first_token(fake, start_router, provider, "openai", delay=3)
    into = Timed()
    with openai_client(router) as client:
        headers = run_openai(client, into)
    assert into.text == "Hello from b"
    check_first_token_fallback(fake, router, "openai", headers, into.elapsed)


def test_anthropic_sdk_first_token_timeout_moves_on(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    router = start_first_token(fake, start_router, provider, "anthropic", delay=3)
    into = Timed()
    with anthropic_client(router) as client:
        headers = run_anthropic(client, "messages.create", into)
    assert into.text == "Hello from b"
    check_first_token_fallback(fake, router, "anthropic", headers, into.elapsed)


@pytest.mark.parametrize(("family", "path"), [OPENAI_ROUTES[1], ANTHROPIC_ROUTES[1]])
def test_raw_first_token_timeout(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
) -> None:
    router = start_first_token(fake, start_router, provider, family, delay=3)
    result = raw_stream(router, family, path)
    assert_complete(result)
    assert result.text == "Hello from b"
    check_first_token_fallback(fake, router, family, result.headers, result.elapsed)


def test_first_token_timeout_also_bounds_a_provider_silent_before_its_headers(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    """The first event is late just as much when the upstream has not even sent its headers."""
    fake.script("a", Hang())
    router = single(
        start_router,
        "openai",
        provider("a", timeout=2, first_token_timeout=0.5, max_retries=2),
        provider("b", priority=2),
    )
    result = raw_stream(router, "openai", OPENAI_ROUTES[1][1])
    assert_complete(result)
    assert result.text == "Hello from b"
    check_first_token_fallback(fake, router, "openai", result.headers, result.elapsed)


def test_first_token_timeout_does_not_bound_later_chunks(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    fake.script("a", Stream(text=TEXT, chunks=3, interval=0.8))
    router = single(
        start_router,
        "anthropic",
        provider("a", "anthropic", timeout=2, first_token_timeout=0.5),
        provider("b", "anthropic", priority=2),
    )
    result = raw_stream(router, "anthropic", ANTHROPIC_ROUTES[0][1])
    assert_complete(result)
    assert result.text == TEXT
    assert result.headers["x-router-provider"] == "a"
    assert result.elapsed > 1.5
    assert fake.requests("b") == []
    assert provider_health(router, "anthropic", "a")["recent_failures"] == 0


# --------------------------------------------------------------------------- 6b. disconnect
# ... before the commit: the client gives up while the router still waits for the upstream.

PRE_COMMIT_WAITS: dict[str, Behaviour] = {
    "no-headers": Hang(),
    "no-first-event": Stream(first_event_delay=30),
}


@pytest.mark.parametrize(
    ("family", "path", "state"),
    [(*OPENAI_ROUTES[0], "no-headers"), (*ANTHROPIC_ROUTES[1], "no-first-event")],
)
def test_raw_client_leaving_before_commit_closes_upstream(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: ProviderFactory,
    family: str,
    path: str,
    state: str,
) -> None:
    router = single(start_router, family, provider("a", family, timeout=2.5))
    fake.script("a", PRE_COMMIT_WAITS[state])
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=0.5)) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post(router.url + path, json=stream_body(family))
    check_disconnect_seen(fake, router, family, time.monotonic())


def test_openai_sdk_timing_out_before_commit_closes_upstream(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    router = single(start_router, "openai", provider("a", timeout=2.5))
    fake.script("a", PRE_COMMIT_WAITS["no-first-event"])
    client = openai.OpenAI(
        base_url=f"{router.url}/openai", api_key="client-key", max_retries=0, timeout=0.5
    )
    with client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True)
    check_disconnect_seen(fake, router, "openai", time.monotonic())


def test_anthropic_sdk_timing_out_before_commit_closes_upstream(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: ProviderFactory
) -> None:
    router = single(start_router, "anthropic", provider("a", "anthropic", timeout=2.5))
    fake.script("a", PRE_COMMIT_WAITS["no-headers"])
    client = anthropic.Anthropic(
        base_url=f"{router.url}/anthropic", api_key="client-key", max_retries=0, timeout=0.5
    )
    with client, pytest.raises(anthropic.APITimeoutError):
        client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=MAX_TOKENS,
            messages=MESSAGES,
            stream=True,
        )
    check_disconnect_seen(fake, router, "anthropic", time.monotonic())
