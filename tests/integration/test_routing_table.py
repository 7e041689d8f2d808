"""SPEC section 4, row by row: the real router against the fake upstream, both families.

Every test drives the router through the official SDK or raw HTTP and checks what the
client sees and what the fake upstream received.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    Ok,
    Raw,
    context_too_long,
    insufficient_quota,
    overloaded,
    rate_limited,
)
from tests.conftest import StartRouter
from tests.routerserver import RouterServer

Provider = Callable[..., dict[str, Any]]

FAMILIES = ["openai", "anthropic"]
FAST = {"retry_backoff_base": 0.01, "retry_backoff_max": 0.02}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-x"}
CHAT_PATHS = {"openai": "/openai/chat/completions", "anthropic": "/anthropic/v1/messages"}
MESSAGES = [{"role": "user", "content": "hi"}]


# --------------------------------------------------------------------------- helpers


# One TLS context for every client: building one per client (loading the CA bundle) costs
# ~40 ms, and the router is plain http anyway.
TLS = ssl.create_default_context()


@dataclass
class Answer:
    """What a successful SDK call saw."""

    text: str
    headers: httpx.Headers | Any


def body_for(family: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODELS[family], "messages": MESSAGES}
    if family == "anthropic":
        body["max_tokens"] = 10
    body.update(extra)
    return body


def openai_client(router: RouterServer, **kw: Any) -> openai.OpenAI:
    # verify=TLS: plain http anyway, and it spares loading the CA bundle per client.
    return openai.OpenAI(
        base_url=f"{router.url}/openai",
        api_key="client-key",
        max_retries=0,
        timeout=20,
        http_client=openai.DefaultHttpxClient(verify=TLS),
        **kw,
    )


def anthropic_client(router: RouterServer, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{router.url}/anthropic",
        api_key="client-key",
        max_retries=0,
        timeout=20,
        http_client=anthropic.DefaultHttpxClient(verify=TLS),
        **kw,
    )


def sdk_call(router: RouterServer, family: str, model: str | None = None) -> Answer:
    """One non-streaming request through the family's official SDK."""
    model = model or MODELS[family]
    if family == "openai":
        with openai_client(router) as client:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=MESSAGES  # type: ignore[arg-type]
            )
            completion = raw.parse()
            return Answer(completion.choices[0].message.content or "", raw.headers)
    with anthropic_client(router) as aclient:
        araw = aclient.messages.with_raw_response.create(
            model=model, max_tokens=10, messages=MESSAGES  # type: ignore[arg-type]
        )
        message = araw.parse()
        return Answer(message.content[0].text, araw.headers)  # type: ignore[union-attr]


def sdk_error(router: RouterServer, family: str, model: str | None = None) -> Exception:
    """The exception the family's SDK raises for one request (fails if none is raised)."""
    try:
        sdk_call(router, family, model)
    except (openai.APIError, anthropic.APIError) as exc:
        return exc
    raise AssertionError("the SDK call succeeded, an error was expected")


def post(
    router: RouterServer,
    family: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    path: str | None = None,
) -> httpx.Response:
    """A raw HTTP request to the family's chat route."""
    url = router.url + (path or CHAT_PATHS[family])
    sent = {"content-type": "application/json", **(headers or {})}
    if content is None:
        content = json.dumps(body if body is not None else body_for(family)).encode()
    with httpx.Client(timeout=20, verify=TLS) as client:
        return client.post(url, content=content, headers=sent)


def health_row(router: RouterServer, family: str, name: str) -> dict[str, Any]:
    with httpx.Client(timeout=10, verify=TLS) as client:
        data = client.get(f"{router.url}/health").json()
    rows = [row for row in data["providers"][family] if row["name"] == name]
    assert len(rows) == 1, data
    return rows[0]


def count(fake: FakeUpstreamThread, name: str) -> int:
    return len(fake.requests(name))


def error_message(family: str, body: dict[str, Any]) -> str:
    """The message of a native error body (asserting the family's shape)."""
    if family == "openai":
        error = body["error"]
        assert set(error) >= {"message", "type", "param", "code"}, body
        return str(error["message"])
    assert body["type"] == "error", body
    assert set(body["error"]) >= {"type", "message"}, body
    return str(body["error"]["message"])


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# --------------------------------------------------------------------------- 2xx


@pytest.mark.parametrize("family", FAMILIES)
def test_2xx_is_returned_with_router_headers(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family), provider("b", family, priority=2)]})
    answer = sdk_call(router, family)
    assert answer.text == "Hello from a"
    assert answer.headers["x-router-provider"] == "a"
    assert answer.headers["x-router-attempts"] == "1"
    assert count(fake, "a") == 1
    assert count(fake, "b") == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_2xx_body_is_the_upstreams_byte_for_byte(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    upstream_body = b'{"id":  "x-1", "custom": [1, 2.50, null], "note": "caf\\u00e9"}\n'
    fake.script("a", Raw(200, upstream_body))
    router = start_router({family: [provider("a", family)]})
    response = post(router, family)
    assert response.status_code == 200
    assert response.content == upstream_body
    assert response.headers["x-router-provider"] == "a"
    assert response.headers["x-router-attempts"] == "1"


# --------------------------------------------------------------------------- 429 / 529


@pytest.mark.parametrize("family", FAMILIES)
def test_429_moves_on_at_once_and_cools_the_provider_down(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=3), provider("b", family, priority=2)],
            "settings": FAST,
        }
    )
    fake.script("a", rate_limited(retry_after=30))
    answer = sdk_call(router, family)
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-provider"] == "b"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "a") == 1, "a rate-limited provider must not be retried"
    row = health_row(router, family, "a")
    assert row["state"] == "cooling_down"
    assert 25 < row["cooldown_seconds_left"] <= 30
    # A second request skips the cooling provider entirely.
    again = sdk_call(router, family)
    assert again.headers["x-router-provider"] == "b"
    assert again.headers["x-router-attempts"] == "1"
    assert count(fake, "a") == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_429_cooldown_ends_and_the_provider_is_used_again(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family), provider("b", family, priority=2)]})
    fake.script("a", rate_limited(retry_after=1))
    assert sdk_call(router, family).headers["x-router-provider"] == "b"
    row = health_row(router, family, "a")
    assert row["state"] == "cooling_down"
    assert 0 < row["cooldown_seconds_left"] <= 1
    assert sdk_call(router, family).headers["x-router-provider"] == "b"
    assert count(fake, "a") == 1
    time.sleep(1.1)
    assert health_row(router, family, "a")["state"] == "healthy"
    answer = sdk_call(router, family)
    assert answer.headers["x-router-provider"] == "a"
    assert answer.text == "Hello from a"
    assert count(fake, "a") == 2


def test_anthropic_529_overloaded_moves_on_at_once_and_cools_down(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router(
        {
            "anthropic": [
                provider("a", "anthropic", max_retries=3),
                provider("b", "anthropic", priority=2),
            ],
            "settings": FAST,
        }
    )
    fake.script("a", Error(529, headers={"retry-after": "20"}))
    answer = sdk_call(router, "anthropic")
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "a") == 1, "an overloaded provider must not be retried at once"
    row = health_row(router, "anthropic", "a")
    assert row["state"] == "cooling_down"
    assert 15 < row["cooldown_seconds_left"] <= 20
    assert sdk_call(router, "anthropic").headers["x-router-provider"] == "b"
    assert count(fake, "a") == 1


def _http_date_in(seconds: float) -> Behaviour:
    when = email.utils.formatdate(time.time() + seconds, usegmt=True)
    return Error(429, headers={"retry-after": when})


# (name, families, the rate-limit answer, settings.rate_limit_cooldown, expected seconds left)
COOLDOWN_CASES: list[tuple[str, Sequence[str], Callable[[], Behaviour], float, float, float]] = [
    ("retry-after-ms", FAMILIES, lambda: rate_limited(retry_after_ms=1500), 60, 0.5, 1.5),
    ("no-header-default", FAMILIES, rate_limited, 42, 38, 42),
    ("retry-after-http-date", FAMILIES, lambda: _http_date_in(40), 1, 35, 41),
    ("529-no-header-default", ("anthropic",), overloaded, 42, 38, 42),
]


@pytest.mark.parametrize(
    ("family", "answer", "default", "low", "high"),
    [
        pytest.param(family, answer, default, low, high, id=f"{name}-{family}")
        for name, families, answer, default, low, high in COOLDOWN_CASES
        for family in families
    ],
)
def test_rate_limit_cooldown_length(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    family: str,
    answer: Callable[[], Behaviour],
    default: float,
    low: float,
    high: float,
) -> None:
    """retry-after-ms wins, an HTTP-date Retry-After counts, no header means the default."""
    router = start_router(
        {
            family: [provider("a", family), provider("b", family, priority=2)],
            "settings": {"rate_limit_cooldown": default},
        }
    )
    fake.script("a", answer())
    assert sdk_call(router, family).headers["x-router-provider"] == "b"
    row = health_row(router, family, "a")
    assert row["state"] == "cooling_down"
    assert low < row["cooldown_seconds_left"] <= high


# --------------------------------------------------------------------------- retryable

RETRYABLE: dict[str, Behaviour] = {
    "500": Error(500),
    "502": Error(502),
    "503": Error(503),
    "504": Error(504),
    "408": Error(408),
    "drop": Drop(),
    "reset": Drop(reset=True),
    "200-not-json": Raw(200, b"<html>this is not json</html>", content_type="text/html"),
    "200-truncated-json": Raw(200, b'{"id": "x", "choices": ['),
    "200-empty": Raw(200, b""),
}


@pytest.mark.parametrize("kind", list(RETRYABLE))
@pytest.mark.parametrize("family", FAMILIES)
def test_retryable_failure_is_retried_up_to_max_retries_then_next(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    family: str,
    kind: str,
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=2), provider("b", family, priority=2)],
            "settings": FAST,
        }
    )
    fake.set_default("a", RETRYABLE[kind])
    answer = sdk_call(router, family)
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-provider"] == "b"
    assert answer.headers["x-router-attempts"] == "4"
    assert count(fake, "a") == 3, "1 attempt + max_retries (2) retries on the same provider"
    assert count(fake, "b") == 1


@pytest.mark.parametrize("kind", list(RETRYABLE))
@pytest.mark.parametrize("family", FAMILIES)
def test_retryable_failure_then_success_on_the_same_provider(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    family: str,
    kind: str,
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=2), provider("b", family, priority=2)],
            "settings": FAST,
        }
    )
    fake.script("a", RETRYABLE[kind], Ok())
    answer = sdk_call(router, family)
    assert answer.text == "Hello from a"
    assert answer.headers["x-router-provider"] == "a"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "b") == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_max_retries_zero_means_a_single_attempt(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=0), provider("b", family, priority=2)],
            "settings": FAST,
        }
    )
    fake.set_default("a", Error(500))
    answer = sdk_call(router, family)
    assert answer.headers["x-router-provider"] == "b"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "a") == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_connection_refused_is_retried_then_next(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    port = closed_port()
    base_url = f"http://127.0.0.1:{port}" + ("/v1" if family == "openai" else "")
    router = start_router(
        {
            family: [
                {"name": "dead", "api_key": "sk-dead", "base_url": base_url, "max_retries": 2},
                provider("b", family, priority=2),
            ],
            "settings": FAST,
        }
    )
    answer = sdk_call(router, family)
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-provider"] == "b"
    assert answer.headers["x-router-attempts"] == "4", "1 + 2 retries on 'dead', then 'b'"


# --------------------------------------------------------------------------- timeout


@pytest.mark.parametrize("family", FAMILIES)
def test_silent_provider_is_not_retried_next_at_once(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [
                provider("a", family, timeout=0.5, max_retries=3),
                provider("b", family, priority=2),
            ],
            "settings": FAST,
        }
    )
    fake.set_default("a", Hang(10))
    started = time.monotonic()
    answer = sdk_call(router, family)
    elapsed = time.monotonic() - started
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "a") == 1, "a silent provider is not retried within the request"
    assert 0.4 < elapsed < 3.0


# --------------------------------------------------------------------------- context length


@pytest.mark.parametrize("family", FAMILIES)
def test_context_too_long_goes_to_the_next_provider_serving_the_model(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [
                provider("a", family, max_retries=3),
                provider("other", family, priority=2, models=["some-other-model"]),
                provider("b", family, priority=3),
            ],
            "settings": FAST,
        }
    )
    fake.set_default("a", context_too_long())
    answer = sdk_call(router, family)
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "a") == 1, "the provider that said 'too long' is not tried again"
    assert count(fake, "other") == 0, "a provider not serving the model is skipped"


def test_context_too_long_recognised_by_the_openai_code(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router({"openai": [provider("a"), provider("b", priority=2)], "settings": FAST})
    fake.script(
        "a",
        Error(
            400,
            error_type="invalid_request_error",
            code="context_length_exceeded",
            message="Too many input tokens for this deployment.",
        ),
    )
    assert sdk_call(router, "openai").headers["x-router-provider"] == "b"
    assert count(fake, "a") == 1


# --------------------------------------------------------------------------- bad key / credit

AUTH_FAILURES: list[tuple[str, Behaviour]] = [
    ("openai", Error(401)),
    ("openai", Error(402)),
    ("openai", Error(403)),
    ("openai", insufficient_quota()),
    ("anthropic", Error(401)),
    ("anthropic", Error(402)),
    ("anthropic", Error(403)),
    (
        "anthropic",
        Error(
            400,
            error_type="invalid_request_error",
            message="Your credit balance is too low to access the Anthropic API. Please go to "
            "Plans & Billing to upgrade or purchase credits.",
        ),
    ),
]


@pytest.mark.parametrize(
    ("family", "behaviour"),
    AUTH_FAILURES,
    ids=["401", "402", "403", "insufficient_quota", "a401", "a402", "a403", "a-credit-balance"],
)
def test_bad_key_or_no_credit_moves_on_and_cools_down_long(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    family: str,
    behaviour: Behaviour,
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=3), provider("b", family, priority=2)],
            "settings": FAST,
        }
    )
    fake.script("a", behaviour)
    answer = sdk_call(router, family)
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "a") == 1
    row = health_row(router, family, "a")
    assert row["state"] == "cooling_down"
    assert row["cooldown_seconds_left"] > 300, "a bad key / empty balance cools down for long"
    assert sdk_call(router, family).headers["x-router-provider"] == "b"
    assert count(fake, "a") == 1


def test_bad_key_is_logged_loudly_without_the_key(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = start_router({"openai": [provider("keyholder"), provider("b", priority=2)]})
    fake.script("keyholder", Error(401))
    with caplog.at_level(logging.WARNING):
        assert sdk_call(router, "openai").headers["x-router-provider"] == "b"
    loud = [
        r for r in caplog.records if r.levelno >= logging.ERROR and "keyholder" in r.getMessage()
    ]
    assert loud, [r.getMessage() for r in caplog.records]
    assert "sk-test-keyholder-secret" not in caplog.text


# --------------------------------------------------------------------------- 404


@pytest.mark.parametrize("family", FAMILIES)
def test_404_moves_on_to_the_next_provider(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=3), provider("b", family, priority=2)],
            "settings": FAST,
        }
    )
    fake.script("a", Error(404))
    answer = sdk_call(router, family)
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-attempts"] == "2"
    assert count(fake, "a") == 1


# --------------------------------------------------------------------------- other 4xx

CLIENT_ERRORS: list[tuple[str, int, str | None, type[Exception]]] = [
    ("openai", 400, None, openai.BadRequestError),
    ("openai", 400, "content_policy_violation", openai.BadRequestError),
    ("openai", 413, None, openai.APIStatusError),
    ("openai", 422, None, openai.UnprocessableEntityError),
    ("anthropic", 400, None, anthropic.BadRequestError),
    ("anthropic", 413, None, anthropic.ContentTooLargeError),
    ("anthropic", 422, None, anthropic.UnprocessableEntityError),
]


@pytest.mark.parametrize(
    ("family", "status", "code", "exc_class"),
    CLIENT_ERRORS,
    ids=["o400", "o400-policy", "o413", "o422", "a400", "a413", "a422"],
)
def test_other_4xx_is_returned_unchanged_through_the_sdk(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    family: str,
    status: int,
    code: str | None,
    exc_class: type[Exception],
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=3), provider("b", family, priority=2)],
            "settings": FAST,
        }
    )
    message = f"upstream says the request is wrong ({status})"
    fake.script("a", Error(status, code=code, message=message))
    exc = sdk_error(router, family)
    assert isinstance(exc, exc_class), repr(exc)
    assert isinstance(exc, openai.APIStatusError | anthropic.APIStatusError)
    assert exc.status_code == status
    assert message in str(exc)
    assert count(fake, "a") == 1, "a client error is not retried"
    assert count(fake, "b") == 0, "a client error is not sent to other providers"


@pytest.mark.parametrize("status", [400, 413, 422])
@pytest.mark.parametrize("family", FAMILIES)
def test_other_4xx_status_and_body_are_byte_identical(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    family: str,
    status: int,
) -> None:
    router = start_router({family: [provider("a", family), provider("b", family, priority=2)]})
    if family == "openai":
        upstream_body = (
            b'{"error": {"message": "Invalid value for \'temperature\': 7.", '
            b'"type": "invalid_request_error", "param": "temperature", "code": null}}'
        )
    else:
        upstream_body = (
            b'{"type": "error", "error": {"type": "invalid_request_error", '
            b'"message": "temperature: must be <= 1"}, "request_id": "req_upstream_1"}'
        )
    fake.script("a", Raw(status, upstream_body))
    response = post(router, family)
    assert response.status_code == status
    assert response.content == upstream_body
    assert count(fake, "a") == 1
    assert count(fake, "b") == 0


# --------------------------------------------------------------------------- circuit breaker

BREAKER = {**FAST, "circuit_breaker_threshold": 2, "circuit_breaker_cooldown": 1}


def open_circuit_of_a(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> RouterServer:
    """A router whose primary ``a`` failed twice (BREAKER threshold): its circuit is open."""
    router = start_router(
        {
            family: [provider("a", family, max_retries=0), provider("b", family, priority=2)],
            "settings": BREAKER,
        }
    )
    fake.set_default("a", Error(500))
    for _ in range(2):
        sdk_call(router, family)
    assert health_row(router, family, "a")["state"] == "circuit_open"
    return router


@pytest.mark.parametrize("family", FAMILIES)
def test_circuit_breaker_opens_then_a_successful_probe_closes_it(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=0), provider("b", family, priority=2)],
            "settings": BREAKER,
        }
    )
    fake.set_default("a", Error(500))
    for _ in range(2):
        assert sdk_call(router, family).headers["x-router-provider"] == "b"
    assert count(fake, "a") == 2
    row = health_row(router, family, "a")
    assert row["state"] == "circuit_open"
    assert 0 < row["cooldown_seconds_left"] <= 1
    # While open, the provider is skipped: the fake gets nothing.
    answer = sdk_call(router, family)
    assert answer.headers["x-router-provider"] == "b"
    assert answer.headers["x-router-attempts"] == "1"
    assert count(fake, "a") == 2
    # After the cooldown one probe goes through; it succeeds, so the provider is healthy.
    time.sleep(1.1)
    fake.set_default("a", Ok())
    answer = sdk_call(router, family)
    assert answer.headers["x-router-provider"] == "a"
    assert answer.text == "Hello from a"
    assert count(fake, "a") == 3
    assert health_row(router, family, "a")["state"] == "healthy"
    assert sdk_call(router, family).headers["x-router-provider"] == "a"


@pytest.mark.parametrize("family", FAMILIES)
def test_circuit_breaker_failed_probe_opens_it_again(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = open_circuit_of_a(fake, start_router, provider, family)
    time.sleep(1.1)
    assert sdk_call(router, family).headers["x-router-attempts"] == "2"  # the probe, then b
    assert count(fake, "a") == 3
    assert health_row(router, family, "a")["state"] == "circuit_open"
    assert sdk_call(router, family).headers["x-router-attempts"] == "1"
    assert count(fake, "a") == 3, "after a failed probe the circuit is open again"


@pytest.mark.parametrize("family", FAMILIES)
def test_half_open_circuit_lets_exactly_one_probe_through(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = open_circuit_of_a(fake, start_router, provider, family)
    time.sleep(1.1)
    fake.set_default("a", Ok(delay=1.0))  # a slow probe: others arrive while it is running
    with ThreadPoolExecutor(max_workers=6) as pool:
        providers = list(
            pool.map(lambda _: post(router, family).headers["x-router-provider"], range(6))
        )
    assert count(fake, "a") == 3, "exactly one probe while the circuit is half open"
    assert sorted(providers) == ["a", "b", "b", "b", "b", "b"]
    assert health_row(router, family, "a")["state"] == "healthy"


# --------------------------------------------------------------------------- all cooling


@pytest.mark.parametrize("family", FAMILIES)
def test_when_all_are_cooling_the_one_ready_first_is_tried(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {family: [provider("a", family), provider("b", family, priority=2)], "settings": FAST}
    )
    fake.script("a", rate_limited(retry_after=60))
    fake.script("b", rate_limited(retry_after=20))
    exc = sdk_error(router, family)
    assert isinstance(exc, openai.RateLimitError | anthropic.RateLimitError), repr(exc)
    assert health_row(router, family, "a")["state"] == "cooling_down"
    assert health_row(router, family, "b")["state"] == "cooling_down"
    # Both cool down; b's cooldown ends first, so b is still tried rather than refusing.
    answer = sdk_call(router, family)
    assert answer.text == "Hello from b"
    assert answer.headers["x-router-provider"] == "b"
    assert count(fake, "a") == 1
    assert count(fake, "b") == 2


# --------------------------------------------------------------------------- all fail


@pytest.mark.parametrize("family", FAMILIES)
def test_all_rate_limited_gives_429_with_shortest_retry_after(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {family: [provider("a", family), provider("b", family, priority=2)], "settings": FAST}
    )
    fake.script("a", rate_limited(retry_after=30))
    fake.script("b", rate_limited(retry_after=7))
    response = post(router, family)
    assert response.status_code == 429
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 6 <= int(retry_after) <= 7
    message = error_message(family, response.json())
    assert "a: 429" in message
    assert "b: 429" in message
    assert "sk-test" not in response.text
    assert "client-key" not in response.text


@pytest.mark.parametrize("family", FAMILIES)
def test_all_rate_limited_raises_the_sdk_rate_limit_error(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {family: [provider("a", family), provider("b", family, priority=2)], "settings": FAST}
    )
    fake.script("a", rate_limited(retry_after=30))
    fake.script("b", rate_limited(retry_after=5))
    exc = sdk_error(router, family)
    assert isinstance(exc, openai.RateLimitError | anthropic.RateLimitError), repr(exc)
    assert exc.status_code == 429
    assert int(exc.response.headers["retry-after"]) in (4, 5)
    assert "a: 429" in str(exc)
    assert "b: 429" in str(exc)
    assert "sk-test" not in exc.response.text


def test_anthropic_all_overloaded_or_rate_limited_gives_429(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router(
        {
            "anthropic": [provider("a", "anthropic"), provider("b", "anthropic", priority=2)],
            "settings": FAST,
        }
    )
    fake.script("a", Error(529, headers={"retry-after": "9"}))
    fake.script("b", rate_limited(retry_after=3))
    exc = sdk_error(router, "anthropic")
    assert isinstance(exc, anthropic.RateLimitError), repr(exc)
    assert int(exc.response.headers["retry-after"]) in (2, 3)
    assert "a: 529" in str(exc)
    assert "b: 429" in str(exc)


@pytest.mark.parametrize("family", FAMILIES)
def test_mixed_failures_give_502_listing_every_attempt(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [
                provider("a", family, max_retries=1),
                provider("b", family, priority=2),
                provider("c", family, priority=3),
            ],
            "settings": FAST,
        }
    )
    fake.set_default("a", Error(500))
    fake.script("b", rate_limited(retry_after=30))
    fake.script("c", Error(401))
    exc = sdk_error(router, family)
    assert isinstance(exc, openai.InternalServerError | anthropic.InternalServerError), repr(exc)
    assert exc.status_code == 502
    response = exc.response
    message = error_message(family, response.json())
    assert message.count("a: 500") == 2, message  # the attempt and its retry
    assert "b: 429" in message
    assert "c: 401" in message
    assert "sk-test" not in response.text
    assert "client-key" not in response.text
    assert response.headers["x-router-attempts"] == "4"


@pytest.mark.parametrize("family", FAMILIES)
def test_all_timeouts_and_dead_ports_give_502(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}" + ("/v1" if family == "openai" else "")
    router = start_router(
        {
            family: [
                provider("a", family, timeout=0.3),
                {
                    "name": "dead",
                    "api_key": "sk-test-dead-secret",
                    "base_url": base_url,
                    "priority": 2,
                    "max_retries": 0,
                },
            ],
            "settings": FAST,
        }
    )
    fake.set_default("a", Hang(10))
    response = post(router, family)
    assert response.status_code == 502
    message = error_message(family, response.json())
    assert "a: " in message
    assert "dead: " in message
    assert "timeout" in message.lower(), "the error kind of a silent provider is listed"
    assert "sk-test" not in response.text


# --------------------------------------------------------------------------- equal priority


@pytest.mark.parametrize("family", FAMILIES)
def test_equal_priority_providers_share_the_load(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family), provider("b", family)]})
    seen = [post(router, family).headers["x-router-provider"] for _ in range(20)]
    assert set(seen) == {"a", "b"}, seen
    assert count(fake, "a") + count(fake, "b") == 20
    assert count(fake, "a") >= 2
    assert count(fake, "b") >= 2


@pytest.mark.parametrize("family", FAMILIES)
def test_a_failed_equal_priority_provider_is_not_tried_twice(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [
                provider("a", family, max_retries=0),
                provider("b", family, max_retries=0),
                provider("c", family, max_retries=0),
                provider("d", family, priority=2),
            ],
            "settings": FAST,
        }
    )
    for name in ("a", "b", "c"):
        fake.set_default(name, Error(500))
    answer = sdk_call(router, family)
    assert answer.headers["x-router-provider"] == "d"
    assert answer.headers["x-router-attempts"] == "4"
    assert [count(fake, name) for name in "abc"] == [1, 1, 1]


@pytest.mark.parametrize("family", FAMILIES)
def test_one_failing_of_two_equal_priority_providers(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [provider("a", family, max_retries=0), provider("b", family, max_retries=0)],
            "settings": {**FAST, "circuit_breaker_threshold": 100},
        }
    )
    fake.set_default("a", Error(503))
    for done in range(1, 7):
        before = count(fake, "a")
        response = post(router, family)
        assert response.status_code == 200
        assert response.headers["x-router-provider"] == "b"
        assert int(response.headers["x-router-attempts"]) <= 2
        assert count(fake, "a") - before <= 1
        assert count(fake, "b") == done


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("family", FAMILIES)
def test_models_list_filters_providers(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [
                provider("a", family, models=["big-model"]),
                provider("b", family, priority=2, models=[MODELS[family], "other"]),
            ]
        }
    )
    answer = sdk_call(router, family)
    assert answer.headers["x-router-provider"] == "b"
    assert answer.headers["x-router-attempts"] == "1"
    assert count(fake, "a") == 0
    assert fake.requests("b")[0].json["model"] == MODELS[family]
    answer = sdk_call(router, family, model="big-model")
    assert answer.headers["x-router-provider"] == "a"
    assert fake.requests("a")[0].json["model"] == "big-model"


@pytest.mark.parametrize("family", FAMILIES)
def test_models_mapping_renames_only_the_model(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    mapping = {"fast": "fast-2024-08-06", "*": "default-upstream-model"}
    router = start_router({family: [provider("a", family, models=mapping)]})
    body = body_for(
        family,
        model="fast",
        temperature=0.25,
        x_unknown_field={"nested": [1, "two", None, {"deep": True}]},
        metadata={"user_id": "u-1"},
    )
    response = post(router, family, body)
    assert response.status_code == 200
    received = fake.requests("a")[0].json
    assert received == {**body, "model": "fast-2024-08-06"}
    response = post(router, family, {**body, "model": "whatever-else"})
    assert response.status_code == 200
    assert fake.requests("a")[1].json == {**body, "model": "default-upstream-model"}


@pytest.mark.parametrize("family", FAMILIES)
def test_models_mapping_keeps_every_other_value_exactly(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    """Renaming changes only ``model``: numbers, strings and key order keep their meaning."""
    router = start_router({family: [provider("a", family, models={"fast": "fast-upstream"})]})
    extra = ', "max_tokens": 10' if family == "anthropic" else ""
    content = (
        r'{"model": "fast", "messages": [{"role": "user", "content": "h\u00e9 \ud83d\ude00"}]'
        + extra
        + ', "x_big_int": 123456789012345678901234567890, "x_u64": 18446744073709551615'
        ', "x_float": 0.1, "x_neg_zero": -0.0, "x_exp": 1.5e-7, "x_order": {"z": 1, "a": 2}}'
    ).encode()
    response = post(router, family, content=content)
    assert response.status_code == 200
    (request,) = fake.requests("a")
    sent = json.loads(content)
    received = json.loads(request.body)
    assert received == {**sent, "model": "fast-upstream"}
    assert list(received) == list(sent)
    assert list(received["x_order"]) == ["z", "a"]
    assert isinstance(received["x_big_int"], int)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_no_provider_serves_is_a_native_404(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {
            family: [
                provider("a", family, models=["m1"]),
                provider("b", family, models={"m2": "m2-upstream"}),
            ]
        }
    )
    exc = sdk_error(router, family, model="unserved-model")
    assert isinstance(exc, openai.NotFoundError | anthropic.NotFoundError), repr(exc)
    response = post(router, family, body_for(family, model="unserved-model"))
    assert response.status_code == 404
    message = error_message(family, response.json())
    assert "unserved-model" in message
    assert fake.requests() == []


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("family", FAMILIES)
def test_client_credentials_never_reach_the_upstream(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family)]})
    sdk_call(router, family)
    post(
        router,
        family,
        headers={"authorization": "Bearer client-key", "x-api-key": "client-key"},
    )
    requests = fake.requests("a")
    assert len(requests) == 2
    for request in requests:
        assert "client-key" not in json.dumps(request.headers)
        if family == "openai":
            assert request.headers["authorization"] == "Bearer sk-test-a-secret"
            assert "x-api-key" not in request.headers
        else:
            assert request.headers["x-api-key"] == "sk-test-a-secret"
            assert "authorization" not in request.headers


def test_anthropic_version_default_and_client_value(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router({"anthropic": [provider("a", "anthropic")]})
    post(router, "anthropic")
    post(router, "anthropic", headers={"anthropic-version": "2099-01-01"})
    first, second = fake.requests("a")
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert second.headers["anthropic-version"] == "2099-01-01"


def test_anthropic_beta_is_passed_on(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router({"anthropic": [provider("a", "anthropic")]})
    with anthropic_client(router, default_headers={"anthropic-beta": "tools-2024-04-04"}) as c:
        c.messages.create(model="claude-x", max_tokens=10, messages=MESSAGES)  # type: ignore
    (request,) = fake.requests("a")
    assert request.headers["anthropic-beta"] == "tools-2024-04-04"
    assert request.headers["anthropic-version"]


def test_client_openai_organization_and_project_are_not_forwarded(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router({"openai": [provider("a")]})
    with openai_client(router, organization="org-client", project="proj-client") as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore
    post(
        router,
        "openai",
        headers={"OpenAI-Organization": "org-client", "OpenAI-Project": "proj-client"},
    )
    for request in fake.requests("a"):
        assert "openai-organization" not in request.headers
        assert "openai-project" not in request.headers


def test_provider_organization_and_project_are_sent(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router(
        {"openai": [provider("a", organization="org-provider", project="proj-provider")]}
    )
    post(
        router,
        "openai",
        headers={"OpenAI-Organization": "org-client", "OpenAI-Project": "proj-client"},
    )
    (request,) = fake.requests("a")
    assert request.headers["openai-organization"] == "org-provider"
    assert request.headers["openai-project"] == "proj-provider"


@pytest.mark.parametrize("family", FAMILIES)
def test_hop_by_hop_headers_are_not_forwarded(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family)]})
    response = post(
        router,
        family,
        headers={
            "Connection": "keep-alive, x-hop-custom",
            "x-hop-custom": "must-not-pass",
            "TE": "trailers",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA==",
            "x-end-to-end": "passes",
        },
    )
    assert response.status_code == 200
    (request,) = fake.requests("a")
    assert "x-hop-custom" not in request.headers
    assert "te" not in request.headers
    assert "keep-alive" not in request.headers
    assert "proxy-authorization" not in request.headers
    assert request.headers["host"] == f"127.0.0.1:{fake.port}", "not the router's Host"
    assert "x-hop-custom" not in request.headers.get("connection", "")
    assert request.headers["x-end-to-end"] == "passes"


@pytest.mark.parametrize("path", ["/anthropic/v1/messages", "/anthropic/chat/completions"])
def test_query_string_is_kept_anthropic(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, path: str
) -> None:
    router = start_router({"anthropic": [provider("a", "anthropic")]})
    response = post(router, "anthropic", path=f"{path}?beta=true")
    assert response.status_code == 200
    (request,) = fake.requests("a")
    assert request.path == "/a/v1/messages"
    assert request.query == "beta=true"


@pytest.mark.parametrize("path", ["/openai/chat/completions", "/openai/v1/chat/completions"])
def test_query_string_is_kept_openai(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, path: str
) -> None:
    router = start_router({"openai": [provider("a")]})
    response = post(router, "openai", path=f"{path}?beta=true&x=1")
    assert response.status_code == 200
    (request,) = fake.requests("a")
    assert request.path == "/a/v1/chat/completions"
    assert request.query == "beta=true&x=1"


def test_anthropic_sdk_beta_call_keeps_query(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider
) -> None:
    router = start_router({"anthropic": [provider("a", "anthropic")]})
    with anthropic_client(router) as client:
        message = client.beta.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,  # type: ignore[arg-type]
            betas=["some-beta-2025-01-01"],
            extra_query={"beta": "true"},
        )
    assert message.content[0].text == "Hello from a"  # type: ignore[union-attr]
    (request,) = fake.requests("a")
    assert request.query == "beta=true"
    assert request.headers["anthropic-beta"] == "some-beta-2025-01-01"


@pytest.mark.parametrize("family", FAMILIES)
def test_upstream_request_id_and_rate_limit_headers_pass_back_but_not_cookies(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family)]})
    fake.script(
        "a",
        Ok(headers={"set-cookie": "session=upstream-secret; Path=/", "x-private": "no"}),
    )
    response = post(router, family)
    assert response.status_code == 200
    if family == "openai":
        assert response.headers["x-request-id"].startswith("req_")
        assert response.headers["x-ratelimit-limit-requests"] == "10000"
        assert response.headers["x-ratelimit-remaining-requests"].isdigit()
    else:
        assert response.headers["request-id"].startswith("req_")
        assert response.headers["anthropic-ratelimit-requests-limit"] == "10000"
        assert response.headers["anthropic-ratelimit-requests-remaining"].isdigit()
    assert "set-cookie" not in response.headers
    assert "upstream-secret" not in str(response.headers)


@pytest.mark.parametrize("family", FAMILIES)
def test_request_id_passes_back_on_passed_through_errors(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family)]})
    fake.script("a", Error(400))
    response = post(router, family)
    assert response.status_code == 400
    header = "x-request-id" if family == "openai" else "request-id"
    assert response.headers[header].startswith("req_")


@pytest.mark.parametrize("family", FAMILIES)
def test_upstream_redirect_is_not_followed_with_the_key(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router(
        {family: [provider("a", family), provider("b", family, priority=2)], "settings": FAST}
    )
    target = fake.base_url("elsewhere", family)
    target += "/chat/completions" if family == "openai" else "/v1/messages"
    fake.set_default("a", Raw(307, b"", headers={"location": target}))
    response = post(router, family)
    assert response.status_code != 307
    assert fake.requests("elsewhere") == [], "the provider's key must not follow a redirect"
    assert "sk-test" not in response.text


@pytest.mark.parametrize("family", FAMILIES)
def test_gzip_encoded_upstream_answer_reaches_the_sdk_intact(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family)]})
    if family == "openai":
        payload: dict[str, Any] = {
            "id": "chatcmpl-gz",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "zipped"},
                    "finish_reason": "stop",
                }
            ],
        }
    else:
        payload = {
            "id": "msg_gz",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": "zipped"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    fake.script(
        "a",
        Raw(200, gzip.compress(json.dumps(payload).encode()), headers={"content-encoding": "gzip"}),
    )
    assert sdk_call(router, family).text == "zipped"


# --------------------------------------------------------------------------- body


@pytest.mark.parametrize("family", FAMILIES)
def test_body_is_forwarded_byte_identical(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family)]})
    extra = ' "max_tokens" :10 ,' if family == "anthropic" else ""
    content = (
        '{\n  "model" :   "' + MODELS[family] + '",' + extra + "\n"
        '\t"messages":[{"role":"user","content":"h\\u00e9llo \\"quoted\\" \u00fcnicode"}],\n'
        '  "zz_unknown": {"b": [1, 2.50, 1e3, null, true], "a": {}},  "temperature": 1.0\n}\n'
    ).encode()
    response = post(router, family, content=content)
    assert response.status_code == 200
    (request,) = fake.requests("a")
    assert request.body == content


@pytest.mark.parametrize("family", FAMILIES)
def test_sdk_request_body_arrives_unchanged(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Provider, family: str
) -> None:
    router = start_router({family: [provider("a", family)]})
    if family == "openai":
        with openai_client(router) as client:
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,  # type: ignore[arg-type]
                temperature=0.5,
                extra_body={"custom_vendor_field": {"k": [1, 2]}},
            )
    else:
        with anthropic_client(router) as aclient:
            aclient.messages.create(
                model="claude-x",
                max_tokens=10,
                messages=MESSAGES,  # type: ignore[arg-type]
                extra_body={"custom_vendor_field": {"k": [1, 2]}, "temperature": 0.5},
            )
    (request,) = fake.requests("a")
    assert request.json["custom_vendor_field"] == {"k": [1, 2]}
    assert request.json["temperature"] == 0.5
    assert request.json["messages"] == MESSAGES
