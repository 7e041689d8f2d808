"""RoutingPolicy: the SPEC section 4 table as verdicts, attempt order, Retry-After, backoff."""

from __future__ import annotations

import email.utils
import random
from typing import Any

import orjson
import pytest

from llm_api_router.config import ProviderConfig, RouterConfig, Settings
from llm_api_router.errors import (
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamTimeout,
)
from llm_api_router.families import AnthropicFamily, OpenAIFamily
from llm_api_router.health import ProviderHealth
from llm_api_router.routing import Action, Effect, RoutingPolicy, parse_retry_after

SETTINGS = Settings(rate_limit_cooldown=7, auth_failure_cooldown=600)
OPENAI = RoutingPolicy(OpenAIFamily(), SETTINGS)
ANTHROPIC = RoutingPolicy(AnthropicFamily(), SETTINGS)


def openai_error(type_: str, code: str | None = None, message: str = "x") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def anthropic_error(type_: str, message: str = "x") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


def judge(policy: RoutingPolicy, status: int, body: bytes, **headers: str) -> Any:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return policy.classify_response(status, hdrs, body, wall_now=1_000_000.0)


# -- the outcome table, row by row ---------------------------------------------------------


def test_2xx_is_returned() -> None:
    verdict = judge(OPENAI, 200, b'{"id": "x"}')
    assert verdict.action is Action.RETURN
    assert verdict.effect is Effect.SUCCESS


def test_429_falls_back_at_once_and_cools_down_for_retry_after() -> None:
    verdict = judge(OPENAI, 429, openai_error("requests", "rate_limit_exceeded"), retry_after="12")
    assert verdict.action is Action.NEXT
    assert verdict.effect is Effect.COOLDOWN
    assert verdict.cooldown == 12
    assert verdict.rate_limited


def test_429_retry_after_ms_wins() -> None:
    verdict = judge(OPENAI, 429, b"", retry_after_ms="1500", retry_after="12")
    assert verdict.cooldown == 1.5


def test_429_without_header_uses_default_cooldown() -> None:
    assert judge(ANTHROPIC, 429, anthropic_error("rate_limit_error")).cooldown == 7


def test_anthropic_529_is_a_rate_limit() -> None:
    verdict = judge(ANTHROPIC, 529, anthropic_error("overloaded_error"))
    assert verdict.action is Action.NEXT
    assert verdict.rate_limited
    assert verdict.outcome == "overloaded"


def test_openai_529_is_a_server_error() -> None:
    assert judge(OPENAI, 529, b"").action is Action.RETRY


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_are_retried(status: int) -> None:
    verdict = judge(OPENAI, status, b"oops")
    assert verdict.action is Action.RETRY
    assert verdict.effect is Effect.FAILURE
    assert not verdict.rate_limited


def test_2xx_with_invalid_json_is_retried() -> None:
    verdict = judge(OPENAI, 200, b"<html>not json")
    assert verdict.action is Action.RETRY
    assert verdict.effect is Effect.FAILURE


def test_timeout_goes_to_next_without_retry() -> None:
    verdict = RoutingPolicy.classify_transport(UpstreamTimeout("x"))
    assert verdict.action is Action.NEXT
    assert verdict.effect is Effect.FAILURE


@pytest.mark.parametrize("error", [UpstreamConnectError("x"), UpstreamDisconnected("x")])
def test_connection_errors_are_retried(error: Exception) -> None:
    verdict = RoutingPolicy.classify_transport(error)  # type: ignore[arg-type]
    assert verdict.action is Action.RETRY


def test_openai_context_length_goes_to_next_without_penalty() -> None:
    verdict = judge(OPENAI, 400, openai_error("invalid_request_error", "context_length_exceeded"))
    assert verdict.action is Action.NEXT
    assert verdict.effect is Effect.NONE


def test_anthropic_prompt_too_long_goes_to_next() -> None:
    body = anthropic_error("invalid_request_error", "prompt is too long: 250000 tokens > 200000")
    assert judge(ANTHROPIC, 400, body).action is Action.NEXT


@pytest.mark.parametrize("status", [401, 402, 403])
def test_bad_key_goes_to_next_with_long_loud_cooldown(status: int) -> None:
    verdict = judge(OPENAI, status, openai_error("invalid_request_error", "invalid_api_key"))
    assert verdict.action is Action.NEXT
    assert verdict.effect is Effect.COOLDOWN
    assert verdict.cooldown == 600
    assert verdict.loud
    assert not verdict.rate_limited


def test_insufficient_quota_is_a_key_problem_not_a_rate_limit() -> None:
    verdict = judge(OPENAI, 429, openai_error("insufficient_quota", "insufficient_quota"))
    assert verdict.action is Action.NEXT
    assert verdict.cooldown == 600
    assert verdict.loud
    assert not verdict.rate_limited


def test_anthropic_low_credit_balance_is_a_key_problem() -> None:
    body = anthropic_error("invalid_request_error", "Your credit balance is too low to access")
    verdict = judge(ANTHROPIC, 400, body)
    assert verdict.action is Action.NEXT
    assert verdict.loud


def test_404_goes_to_next() -> None:
    verdict = judge(OPENAI, 404, openai_error("invalid_request_error", "model_not_found"))
    assert verdict.action is Action.NEXT
    assert verdict.effect is Effect.NONE


@pytest.mark.parametrize("status", [400, 413, 422])
def test_other_4xx_is_returned_unchanged(status: int) -> None:
    verdict = judge(OPENAI, status, openai_error("invalid_request_error", "bad"))
    assert verdict.action is Action.RETURN
    assert verdict.outcome == "client_error"


def test_content_policy_400_is_returned() -> None:
    body = anthropic_error("invalid_request_error", "Output blocked by content filtering policy")
    assert judge(ANTHROPIC, 400, body).action is Action.RETURN


# -- Retry-After parsing ----------------------------------------------------------------------


def test_retry_after_http_date() -> None:
    when = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after({"retry-after": when}, 1_000_000.0) == 30.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "garbage"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "1e12"}, 3600.0),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "-inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "nan"}, None),
        ({"retry-after-ms": "inf", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "1e15"}, 3600.0),
        ({"retry-after-ms": "x", "retry-after": "2"}, 2.0),
    ],
)
def test_retry_after_edge_cases(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, 0.0) == expected


def test_retry_after_in_the_past_means_ready_now() -> None:
    when = email.utils.formatdate(999_000.0, usegmt=True)
    assert parse_retry_after({"retry-after": when}, 1_000_000.0) == 0.0


@pytest.mark.parametrize("value", ["inf", "nan", "-30", "Infinity", "soon"])
def test_nonsense_retry_after_gets_the_default_cooldown(value: str) -> None:
    verdict = judge(OPENAI, 429, openai_error("rate_limit_error"), retry_after=value)
    assert verdict.effect is Effect.COOLDOWN
    assert verdict.cooldown == SETTINGS.rate_limit_cooldown


@pytest.mark.parametrize("header", ["retry_after", "retry_after_ms"])
def test_settings_max_cooldown_caps_what_an_upstream_asks_for(header: str) -> None:
    policy = RoutingPolicy(OpenAIFamily(), Settings(max_cooldown=120))
    verdict = judge(policy, 429, openai_error("rate_limit_error"), **{header: "86400000"})
    assert verdict.cooldown == 120.0
    # the default cap is an hour, not a day
    verdict = judge(OPENAI, 429, openai_error("rate_limit_error"), **{header: "86400000"})
    assert verdict.cooldown == 3600.0


# -- attempt order ---------------------------------------------------------------------------


def providers(*specs: dict[str, Any]) -> list[tuple[ProviderConfig, ProviderHealth]]:
    config = RouterConfig.from_dict({"openai": [{"api_key": "k", **s} for s in specs]})
    return [(p, ProviderHealth(threshold=3, open_seconds=30)) for p in config.openai]


def names(plan: list[Any]) -> list[str]:
    return [c.provider.name for c in plan]


def test_plan_orders_by_priority() -> None:
    pool = providers(
        {"name": "c", "priority": 3}, {"name": "a", "priority": 1}, {"name": "b", "priority": 2}
    )
    assert names(OPENAI.plan(pool, "m", 0.0, 0)) == ["a", "b", "c"]


def test_equal_priorities_rotate() -> None:
    pool = providers({"name": "a"}, {"name": "b"}, {"name": "z", "priority": 2})
    firsts = {names(OPENAI.plan(pool, "m", 0.0, r))[0] for r in range(4)}
    assert firsts == {"a", "b"}
    for rotation in range(4):
        plan = names(OPENAI.plan(pool, "m", 0.0, rotation))
        assert sorted(plan[:2]) == ["a", "b"]
        assert plan[2] == "z"


def test_cooling_providers_are_skipped() -> None:
    pool = providers({"name": "a"}, {"name": "b", "priority": 2})
    pool[0][1].cool_down(0.0, 10.0, "rate_limited")
    assert names(OPENAI.plan(pool, "m", 5.0, 0)) == ["b"]
    assert names(OPENAI.plan(pool, "m", 10.0, 0)) == ["a", "b"]


def test_all_cooling_tries_the_one_ready_first() -> None:
    pool = providers({"name": "a"}, {"name": "b", "priority": 2})
    pool[0][1].cool_down(0.0, 50.0, "rate_limited")
    pool[1][1].cool_down(0.0, 20.0, "rate_limited")
    assert names(OPENAI.plan(pool, "m", 1.0, 0)) == ["b"]
    assert OPENAI.retry_after(pool, "m", 1.0) == 19.0


def test_models_filter_and_rename() -> None:
    pool = providers(
        {"name": "a", "models": ["gpt-x"]},
        {"name": "b", "models": {"gpt-y": "gpt-y-2024"}},
        {"name": "c", "priority": 2},
    )
    plan = OPENAI.plan(pool, "gpt-y", 0.0, 0)
    assert names(plan) == ["b", "c"]
    assert [c.upstream_model for c in plan] == ["gpt-y-2024", "gpt-y"]
    assert OPENAI.plan(providers({"name": "a", "models": ["x"]}), "y", 0.0, 0) == []


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = RoutingPolicy(OpenAIFamily(), Settings(retry_backoff_base=0.1, retry_backoff_max=0.3))
    rng = random.Random(1)
    delays = [policy.backoff(i, rng) for i in range(5)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert all(d <= 0.3 for d in delays)
    assert len({round(policy.backoff(0, rng), 6) for _ in range(10)}) > 1
