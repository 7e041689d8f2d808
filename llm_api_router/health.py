"""Per-provider health: cooldowns, a circuit breaker with a half-open probe, recent failures.

Pure state fed with times from an injected clock (seconds, monotonic); no I/O, no asyncio.

- A **cooldown** follows a rate limit (``Retry-After`` or the default) or a bad key / empty
  balance (a long one).  A cooling provider is skipped until its cooldown ends.
- The **circuit** opens after ``threshold`` consecutive failures (5xx, timeouts, broken
  connections) and stays open for ``open_seconds``; then exactly one request is let through
  as a probe (half-open): success closes the circuit, failure opens it again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

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
    """The health of one provider.  Every method takes ``now`` from the caller's clock."""

    __slots__ = (
        "_consecutive",
        "_cooldown_until",
        "_last_failure",
        "_open_seconds",
        "_open_until",
        "_probing",
        "_recent",
        "_threshold",
    )

    def __init__(self, *, threshold: int, open_seconds: float) -> None:
        self._threshold = threshold
        self._open_seconds = open_seconds
        self._cooldown_until = 0.0
        self._open_until: float | None = None  # None: circuit closed
        self._probing = False
        self._consecutive = 0
        self._recent: deque[float] = deque(maxlen=1000)
        self._last_failure: str | None = None

    # -- questions ------------------------------------------------------------------------

    def ready_at(self) -> float:
        """When this provider may next be tried (0 if it may be tried now)."""
        return max(self._cooldown_until, self._open_until or 0.0)

    def is_available(self, now: float) -> bool:
        """May a new request try this provider now?"""
        if now < self._cooldown_until:
            return False
        if self._open_until is None:
            return True
        return now >= self._open_until and not self._probing

    def begin_attempt(self, now: float) -> bool:
        """Claim an attempt.  False while another request holds the half-open probe."""
        if self._open_until is None or now < self._open_until:
            return True
        if self._probing:
            return False
        self._probing = True
        return True

    def snapshot(self, now: float) -> HealthSnapshot:
        while self._recent and self._recent[0] < now - RECENT_WINDOW:
            self._recent.popleft()
        if self._open_until is not None and now < self._open_until:
            state, left = ProviderState.CIRCUIT_OPEN, self._open_until - now
        elif self._open_until is not None:
            state, left = ProviderState.HALF_OPEN, 0.0
        elif now < self._cooldown_until:
            state, left = ProviderState.COOLING_DOWN, self._cooldown_until - now
        else:
            state, left = ProviderState.HEALTHY, 0.0
        if state is not ProviderState.COOLING_DOWN and now < self._cooldown_until:
            left = max(left, self._cooldown_until - now)
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
        self._open_until = None
        self._probing = False

    def record_failure(self, now: float, reason: str) -> None:
        """A failure that counts toward the circuit breaker (5xx, timeout, broken connection)."""
        self._note(now, reason)
        self._consecutive += 1
        if self._probing or self._consecutive >= self._threshold:
            self._open_until = now + self._open_seconds
        self._probing = False

    def cool_down(self, now: float, seconds: float, reason: str) -> None:
        """Skip this provider for ``seconds`` (rate limited, bad key, out of credit).

        The provider did answer, so a probe that gets this answer closes the circuit: the
        cooldown alone decides when it is tried again.
        """
        self._note(now, reason)
        self._cooldown_until = max(self._cooldown_until, now + seconds)
        self._open_until = None
        self._probing = False

    def release(self) -> None:
        """An attempt ended without a verdict (e.g. the client went away): free the probe."""
        self._probing = False

    def _note(self, now: float, reason: str) -> None:
        self._recent.append(now)
        self._last_failure = reason
