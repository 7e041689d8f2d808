"""Per-provider health: cooldowns, a circuit breaker with a half-open probe, recent failures.

Fed with times from an injected clock (seconds, monotonic); no I/O, no asyncio.  Cooldowns
and the circuit live in a :class:`~llm_api_router.state.SharedState` (by default one of its
own, in-process; with Redis configured, one shared by the fleet), so what one process learns
every process honours; the failure counts stay with this process.

- A **cooldown** follows a rate limit (``Retry-After`` or the default) or a bad key / empty
  balance (a long one).  A cooling provider is skipped until its cooldown ends.
- The **circuit** opens after ``threshold`` consecutive failures (5xx, timeouts, broken
  connections) and stays open for ``open_seconds``; then exactly one request (of the whole
  fleet, when shared) is let through as a probe (half-open): success closes the circuit,
  failure opens it again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from llm_api_router.state import LocalState, SharedState

__all__ = ["HealthSnapshot", "ProviderHealth", "ProviderState"]

#: How far back "recent failures" look, in seconds.
RECENT_WINDOW = 300.0


class ProviderState(StrEnum):
    HEALTHY = "healthy"
    COOLING_DOWN = "cooling_down"
    CIRCUIT_OPEN = "circuit_open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """What /health and /metrics show about one provider."""

    state: ProviderState
    seconds_left: float
    recent_failures: int
    consecutive_failures: int
    last_failure: str | None


class ProviderHealth:
    """The health of one provider.  Every method takes ``now`` from the caller's clock.

    ``key`` names the provider in ``state`` (unique across families); without a ``state``
    the provider keeps its own, in-process.
    """

    __slots__ = (
        "_consecutive",
        "_key",
        "_last_failure",
        "_open_seconds",
        "_probing",
        "_recent",
        "_state",
        "_threshold",
    )

    def __init__(
        self,
        *,
        threshold: int,
        open_seconds: float,
        key: str = "provider",
        state: SharedState | None = None,
    ) -> None:
        self._threshold = threshold
        self._open_seconds = open_seconds
        self._key = key
        self._state: SharedState = state if state is not None else LocalState()
        self._probing = False  # this process holds the half-open probe
        self._consecutive = 0
        self._recent: deque[float] = deque(maxlen=1000)
        self._last_failure: str | None = None

    # -- questions ------------------------------------------------------------------------

    def _open_until(self) -> float | None:
        circuit = self._state.circuit(self._key)
        return None if circuit is None else circuit.open_until

    def ready_at(self) -> float:
        """When this provider may next be tried (0 if it may be tried now)."""
        return max(self._state.cooldown_until(self._key), self._open_until() or 0.0)

    def is_available(self, now: float) -> bool:
        """May a new request try this provider now?"""
        if now < self._state.cooldown_until(self._key):
            return False
        open_until = self._open_until()
        if open_until is None:
            return True
        return now >= open_until and self._state.probe_available(self._key, now)

    def begin_attempt(self, now: float) -> bool:
        """Claim an attempt.  False while another request holds the half-open probe."""
        open_until = self._open_until()
        if open_until is None or now < open_until:
            return True
        if self._probing or not self._state.claim_probe(self._key, now):
            return False
        self._probing = self._open_until() is not None
        return True

    def snapshot(self, now: float, limited_until: float = 0.0) -> HealthSnapshot:
        """The provider's state; ``limited_until``: when a limit of its account ends."""
        while self._recent and self._recent[0] < now - RECENT_WINDOW:
            self._recent.popleft()
        cooldown_until = max(self._state.cooldown_until(self._key), limited_until)
        open_until = self._open_until()
        if open_until is not None and now < open_until:
            state, left = ProviderState.CIRCUIT_OPEN, open_until - now
        elif open_until is not None:
            state, left = ProviderState.HALF_OPEN, 0.0
        elif now < cooldown_until:
            state, left = ProviderState.COOLING_DOWN, cooldown_until - now
        else:
            state, left = ProviderState.HEALTHY, 0.0
        if state is not ProviderState.COOLING_DOWN and now < cooldown_until:
            left = max(left, cooldown_until - now)
        return HealthSnapshot(
            state=state,
            seconds_left=round(left, 3),
            recent_failures=len(self._recent),
            consecutive_failures=self._consecutive,
            last_failure=self._last_failure,
        )

    # -- outcomes -------------------------------------------------------------------------

    def record_success(self) -> None:
        self._consecutive = 0
        self._close()

    def record_failure(self, now: float, reason: str) -> None:
        """A failure that counts toward the circuit breaker (5xx, timeout, broken connection)."""
        self._note(now, reason)
        self._consecutive += 1
        if self._probing or self._consecutive >= self._threshold:
            self._state.open_circuit(self._key, now + self._open_seconds)
        self._probing = False

    def cool_down(self, now: float, seconds: float, reason: str) -> None:
        """Skip this provider for ``seconds`` (rate limited, bad key, out of credit).

        The provider did answer, so a probe that gets this answer closes the circuit: the
        cooldown alone decides when it is tried again.
        """
        self._note(now, reason)
        self._state.extend_cooldown(self._key, now + seconds)
        self._close()

    def answered(self, now: float, reason: str) -> None:
        """The provider answered, but with a limit of its account (cooled down elsewhere):
        noted as a recent failure; a probe that gets this answer closes the circuit."""
        self._note(now, reason)
        self._close()

    def release(self) -> None:
        """An attempt ended without a verdict (e.g. the client went away): free the probe."""
        if self._probing:
            self._probing = False
            self._state.release_probe(self._key)

    def _close(self) -> None:
        # Only a change is written: a success on a closed circuit costs nothing.
        circuit = self._state.circuit(self._key)
        if self._probing or (circuit is not None and circuit.open_until is not None):
            self._state.close_circuit(self._key)
        self._probing = False

    def _note(self, now: float, reason: str) -> None:
        self._recent.append(now)
        self._last_failure = reason
