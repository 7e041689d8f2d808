"""The in-process state and the mirror's merge rules: sans-IO, with a hand-driven clock."""

from __future__ import annotations

import pytest

from llm_api_router.config import RouterConfig
from llm_api_router.errors import ConfigError
from llm_api_router.health import ProviderHealth, ProviderState
from llm_api_router.state import LocalState, create_state
from llm_api_router.state.base import PROBE_LEASE
from llm_api_router.state.mirror import Mirror, Records
from llm_api_router.state.redis_state import RedisState, display_url
from llm_api_router.state.scripts import hashed, parse_event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mirror(clock: Clock, me: str = "me", records: int = 3) -> Mirror:
    return Mirror(
        me=me, clock=clock, owner_records_max=records, owner_records_ttl=60, session_ttl=10
    )


# -- cooldowns -------------------------------------------------------------------------------


def test_a_cooldown_is_extended_never_shortened() -> None:
    state = LocalState(clock=Clock())
    state.extend_cooldown("openai/a", 1030.0)
    state.extend_cooldown("openai/a", 1010.0)  # another instance's shorter one
    assert state.cooldown_until("openai/a") == 1030.0
    state.extend_cooldown("openai/a", 1060.0)
    assert state.cooldown_until("openai/a") == 1060.0
    assert state.cooldown_until("openai/b") == 0.0


def test_cooldowns_lists_live_scopes_and_forgets_expired_ones() -> None:
    state = LocalState(clock=Clock())
    state.extend_cooldown("acct|gpt-4o|generate", 1005.0)
    state.extend_cooldown("openai/a", 1020.0)
    assert state.cooldowns(1010.0) == {"openai/a": 1020.0}
    assert state.cooldown_until("acct|gpt-4o|generate") == 0.0


def test_many_scopes_are_pruned_as_they_expire() -> None:
    clock = Clock()
    m = mirror(clock)
    for index in range(200):
        m.extend_cooldown(f"s{index}", clock.now + 1)
    clock.now += 2
    m.extend_cooldown("fresh", clock.now + 1)
    for index in range(70):
        m.extend_cooldown(f"t{index}", clock.now + 1)
    assert len(m.cooldowns(clock.now)) == 71


# -- circuit and the half-open probe ---------------------------------------------------------


def test_one_probe_after_the_open_period() -> None:
    state = LocalState(clock=Clock())
    state.open_circuit("openai/a", 1030.0)
    assert not state.probe_available("openai/a", 1029.0)
    assert not state.claim_probe("openai/a", 1029.0)
    assert state.claim_probe("openai/a", 1031.0)
    assert not state.probe_available("openai/a", 1031.0)
    assert not state.claim_probe("openai/a", 1031.0)
    state.release_probe("openai/a")
    assert state.claim_probe("openai/a", 1032.0)
    state.open_circuit("openai/a", 1060.0)  # the probe failed: open again, probe freed
    circuit = state.circuit("openai/a")
    assert circuit is not None
    assert circuit.open_until == 1060.0
    assert circuit.probe_owner is None
    state.close_circuit("openai/a")
    assert state.circuit("openai/a") is None
    assert state.probe_available("openai/a", 1000.0)


def test_a_lost_probe_lapses_after_its_lease() -> None:
    m = mirror(Clock(), me="other")
    m.apply_circuit("openai/a", 1000.0, "someone", 1000.0 + PROBE_LEASE, seq=3)
    assert not m.probe_available("openai/a", 1001.0)
    assert m.probe_available("openai/a", 1000.0 + PROBE_LEASE)


def test_circuit_changes_from_elsewhere_apply_in_sequence_order() -> None:
    m = mirror(Clock())
    assert m.apply_circuit("openai/a", 1030.0, None, 0.0, seq=5)
    assert not m.apply_circuit("openai/a", None, None, 0.0, seq=4)  # older: ignored
    circuit = m.circuit("openai/a")
    assert circuit is not None
    assert circuit.open_until == 1030.0
    assert m.apply_circuit("openai/a", None, None, 0.0, seq=6)
    # closed, remembered only to ignore a late "open" with an older number
    assert not m.apply_circuit("openai/a", 1030.0, None, 0.0, seq=5)
    circuit = m.circuit("openai/a")
    assert circuit is not None
    assert circuit.open_until is None
    m.forget_closed()
    assert m.circuit("openai/a") is None


def test_own_probe_in_flight_survives_an_update_naming_this_process() -> None:
    m = mirror(Clock())
    m.apply_circuit("openai/a", 990.0, "me", 1002.0, seq=1)
    assert m.claim_probe("openai/a", 1000.0)
    m.apply_circuit("openai/a", 990.0, "me", 1100.0, seq=2)
    circuit = m.circuit("openai/a")
    assert circuit is not None
    assert circuit.in_flight


# -- owner records and sessions --------------------------------------------------------------


def test_records_are_bounded_and_expire() -> None:
    clock = Clock()
    records = Records(3, 60, clock)
    for name in ("r1", "r2", "r3", "r4"):
        records.put(name, "acct-a")
    assert len(records) == 3
    assert records.get("r1") is None  # the oldest went first
    assert records.get("r4") == "acct-a"
    records.put("r2", "acct-b")  # rewritten: now the newest
    records.put("r5", "acct-a")
    assert records.get("r3") is None
    assert records.get("r2") == "acct-b"
    clock.now += 61
    assert records.get("r2") is None
    records.put("old", "x", expires=clock.now - 1)
    assert records.get("old") is None


def test_local_state_keeps_owners_and_sessions() -> None:
    clock = Clock()
    state = LocalState(clock=clock, owner_records_max=10, owner_records_ttl=100, session_ttl=5)
    state.record_owner("resp_123", "org-a")
    state.record_session("session-1", "openai/b")
    assert state.owner("resp_123") == "org-a"
    assert state.owner("resp_456") is None
    assert state.session_provider("session-1") == "openai/b"
    clock.now += 6
    assert state.session_provider("session-1") is None
    assert state.owner("resp_123") == "org-a"


# -- health through a shared state -----------------------------------------------------------


def two_processes() -> tuple[ProviderHealth, ProviderHealth]:
    """Two processes' view of one provider through one state (what Redis gives a fleet)."""
    state = LocalState(clock=Clock())
    return tuple(  # type: ignore[return-value]
        ProviderHealth(threshold=1, open_seconds=10, key="openai/a", state=state) for _ in range(2)
    )


def test_a_cooldown_recorded_by_one_is_honoured_by_the_other() -> None:
    one, two = two_processes()
    one.cool_down(1000.0, 30, "rate_limited")
    assert not two.is_available(1001.0)
    assert two.snapshot(1001.0).state is ProviderState.COOLING_DOWN
    assert two.ready_at() == 1030.0
    assert two.is_available(1030.0)


def test_only_one_of_two_probes_an_open_circuit() -> None:
    one, two = two_processes()
    one.record_failure(1000.0, "server_error")
    assert two.snapshot(1001.0).state is ProviderState.CIRCUIT_OPEN
    assert not two.is_available(1005.0)
    assert two.begin_attempt(1011.0)  # the probe
    assert not one.is_available(1011.0)
    assert not one.begin_attempt(1011.0)
    two.record_success()
    assert one.is_available(1012.0)
    assert one.snapshot(1012.0).state is ProviderState.HEALTHY


def test_a_released_probe_can_be_taken_by_the_other() -> None:
    one, two = two_processes()
    one.record_failure(1000.0, "timeout")
    assert one.begin_attempt(1011.0)
    one.release()
    assert two.begin_attempt(1011.0)
    two.record_failure(1012.0, "timeout")  # the probe failed: open again
    assert not one.is_available(1013.0)
    assert one.snapshot(1013.0).state is ProviderState.CIRCUIT_OPEN


# -- configuration ---------------------------------------------------------------------------


def test_state_section_and_environment() -> None:
    url = "rediss://router:s3cr3t-pass@redis.internal:6380/2"
    config = RouterConfig.from_dict(
        {"state": {"redis_url": "${REDIS}", "key_prefix": "team-a:"}}, environ={"REDIS": url}
    )
    assert config.state.redis_url is not None
    assert config.state.redis_url.get_secret_value() == url
    assert config.state.key_prefix == "team-a:"
    assert "s3cr3t-pass" in config.secrets()
    assert "s3cr3t-pass" not in repr(config)
    from_env = RouterConfig.from_dict(
        {}, environ={"LLM_ROUTER_REDIS_URL": "redis://127.0.0.1:6379/0"}
    )
    assert from_env.state.redis_url is not None
    assert from_env.state.key_prefix == "llm-router:"
    assert RouterConfig.from_dict({}, environ={}).state.redis_url is None


@pytest.mark.parametrize(
    ("data", "environ", "field"),
    [
        ({"state": {"redis_url": "http://x"}}, {}, "state.redis_url"),
        ({"state": {"redis": "redis://x"}}, {}, "state.redis"),
        ({"state": {"key_prefix": ""}}, {}, "state.key_prefix"),
        ({}, {"LLM_ROUTER_REDIS_URL": "localhost:6379"}, "LLM_ROUTER_REDIS_URL"),
    ],
)
def test_bad_state_config_names_the_field(
    data: dict[str, object], environ: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_dict(data, environ=environ)
    assert field in str(caught.value)


def test_create_state_picks_the_implementation() -> None:
    assert isinstance(create_state(RouterConfig()), LocalState)
    config = RouterConfig.from_dict({"state": {"redis_url": "redis://127.0.0.1:1/0"}})
    state = create_state(config)
    assert isinstance(state, RedisState)
    assert state.status == "degraded"  # not started: nothing shared yet


def test_display_url_never_shows_credentials() -> None:
    assert display_url("rediss://user:pw@host:6380/1") == "rediss://host:6380/1"
    assert display_url("redis://:pw@host") == "redis://host"
    assert display_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_ids_are_hashed_and_foreign_messages_ignored() -> None:
    assert hashed("resp_abc") != "resp_abc"
    assert len(hashed("x" * 10_000)) == 32
    assert parse_event(b"not json") is None
    assert parse_event(b'{"k": "cd"}') is None
    event = parse_event(b'{"k":"cd","o":"x","s":"openai/a","t":1700000000000}')
    assert event is not None
    assert event.deadline == 1_700_000_000_000
