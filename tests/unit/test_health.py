"""ProviderHealth: cooldowns, circuit breaker, half-open probe (pure, instant)."""

from __future__ import annotations

from llm_api_router.health import ProviderHealth, ProviderState


def make() -> ProviderHealth:
    return ProviderHealth(threshold=3, open_seconds=30.0)


def test_new_provider_is_healthy() -> None:
    health = make()
    assert health.is_available(0.0)
    snap = health.snapshot(0.0)
    assert snap.state is ProviderState.HEALTHY
    assert snap.seconds_left == 0
    assert snap.recent_failures == 0


def test_cooldown_skips_until_it_ends() -> None:
    health = make()
    health.cool_down(100.0, 20.0, "rate_limited")
    assert not health.is_available(119.9)
    assert health.is_available(120.0)
    snap = health.snapshot(105.0)
    assert snap.state is ProviderState.COOLING_DOWN
    assert snap.seconds_left == 15.0
    assert snap.recent_failures == 1
    assert snap.last_failure == "rate_limited"
    assert health.ready_at() == 120.0


def test_cooldown_never_shortens() -> None:
    health = make()
    health.cool_down(0.0, 100.0, "auth_failed")
    health.cool_down(1.0, 5.0, "rate_limited")
    assert not health.is_available(50.0)


def test_circuit_opens_after_threshold_consecutive_failures() -> None:
    health = make()
    health.record_failure(0.0, "server_error")
    health.record_failure(1.0, "server_error")
    assert health.is_available(1.0)
    health.record_failure(2.0, "timeout")
    assert not health.is_available(2.0)
    snap = health.snapshot(12.0)
    assert snap.state is ProviderState.CIRCUIT_OPEN
    assert snap.seconds_left == 20.0
    assert snap.consecutive_failures == 3


def test_success_resets_consecutive_failures() -> None:
    health = make()
    health.record_failure(0.0, "server_error")
    health.record_failure(0.0, "server_error")
    health.record_success()
    health.record_failure(0.0, "server_error")
    assert health.is_available(0.0)


def test_half_open_lets_exactly_one_probe_through() -> None:
    health = make()
    for _ in range(3):
        health.record_failure(0.0, "server_error")
    assert not health.begin_attempt(10.0) or not health.is_available(10.0)
    # After the open period: one probe, the others skip it.
    assert health.is_available(30.0)
    assert health.snapshot(30.0).state is ProviderState.HALF_OPEN
    assert health.begin_attempt(30.0)
    assert not health.is_available(30.0)
    assert not health.begin_attempt(30.0)


def test_probe_success_closes_circuit() -> None:
    health = make()
    for _ in range(3):
        health.record_failure(0.0, "server_error")
    assert health.begin_attempt(30.0)
    health.record_success()
    assert health.is_available(30.0)
    assert health.snapshot(30.0).state is ProviderState.HEALTHY


def test_probe_failure_reopens_circuit() -> None:
    health = make()
    for _ in range(3):
        health.record_failure(0.0, "server_error")
    assert health.begin_attempt(30.0)
    health.record_failure(30.0, "server_error")
    assert not health.is_available(59.0)
    assert health.is_available(60.0)


def test_released_probe_can_be_taken_again() -> None:
    health = make()
    for _ in range(3):
        health.record_failure(0.0, "server_error")
    assert health.begin_attempt(30.0)
    health.release()
    assert health.begin_attempt(30.0)


def test_rate_limit_during_probe_closes_circuit_but_cools_down() -> None:
    health = make()
    for _ in range(3):
        health.record_failure(0.0, "server_error")
    assert health.begin_attempt(30.0)
    health.cool_down(30.0, 5.0, "rate_limited")
    assert not health.is_available(34.0)
    assert health.is_available(35.0)


def test_recent_failures_expire() -> None:
    health = make()
    health.record_failure(0.0, "server_error")
    assert health.snapshot(10.0).recent_failures == 1
    assert health.snapshot(10_000.0).recent_failures == 0
