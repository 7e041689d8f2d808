"""The one interface every place that keeps provider state implements.

The request path only ever calls the synchronous methods: they read and change a local
mirror in memory and never wait for anything.  An implementation that shares the state
(Redis) sends each change out in the background and folds in what other processes learn.

Times are the caller's clock (seconds, monotonic); a cooldown or an open circuit is a
deadline on that clock.  Scopes are opaque strings: today ``"<family>/<provider>"``; the
accounts work adds ``"account|model|limit-class"`` and account marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self

__all__ = [
    "DEFAULT_SESSION_TTL",
    "PROBE_CLAIM_LEASE",
    "PROBE_LEASE",
    "Circuit",
    "SharedState",
    "StateStatus",
]

StateStatus = Literal["off", "ok", "degraded"]

#: How long a half-open probe may stay in flight before another process may probe.
PROBE_LEASE = 120.0
#: How long a process that claimed a probe may take to start it (shared state only).
PROBE_CLAIM_LEASE = 2.0
#: How long a session stays with the provider that served its last turn.
DEFAULT_SESSION_TTL = 3600.0


@dataclass(slots=True)
class Circuit:
    """A provider's circuit breaker as the mirror knows it.

    ``open_until`` is None when the circuit is closed; past it, the circuit is half-open and
    the holder of the probe (``probe_owner``, until ``probe_until``) may send one request.
    ``in_flight`` is this process's own probe request.
    """

    open_until: float | None = None
    probe_owner: str | None = None
    probe_until: float = 0.0
    in_flight: bool = False
    seq: int = 0

    def probe_held(self, now: float) -> bool:
        return self.probe_owner is not None and now < self.probe_until


class SharedState(Protocol):
    """Cooldowns, circuit breakers, owner records and session affinity.

    Synchronous methods are for the request path (local mirror, never blocking); the async
    context manager starts and stops whatever runs in the background.
    """

    @property
    def status(self) -> StateStatus:
        """``off`` (in-process only), ``ok`` (shared and connected) or ``degraded``."""

    # -- cooldowns ------------------------------------------------------------------------

    def quiet(self) -> bool:
        """No scope cools down and no circuit is open or probing (the fast healthy path)."""

    def cooldown_until(self, scope: str) -> float:
        """When ``scope``'s cooldown ends (0 when it has none)."""

    def extend_cooldown(self, scope: str, until: float) -> None:
        """Cool ``scope`` down until ``until``; an earlier deadline never shortens one."""

    def cooldowns(self, now: float) -> dict[str, float]:
        """Every scope still cooling down at ``now``, with its deadline."""

    # -- circuit breaker ------------------------------------------------------------------

    def circuit(self, key: str) -> Circuit | None:
        """The circuit of provider ``key`` (None: closed, nobody probing)."""

    def open_circuit(self, key: str, until: float) -> None:
        """Open (or re-open) ``key``'s circuit until ``until``; frees this process's probe."""

    def close_circuit(self, key: str) -> None:
        """Close ``key``'s circuit everywhere (the provider answered)."""

    def probe_available(self, key: str, now: float) -> bool:
        """Could this process take the half-open probe of ``key`` now?"""

    def claim_probe(self, key: str, now: float) -> bool:
        """Take the one half-open probe of ``key``; False when someone else holds it."""

    def release_probe(self, key: str) -> None:
        """Give this process's probe back without a verdict."""

    # -- owner records and sessions -------------------------------------------------------

    def owner(self, object_id: str) -> str | None:
        """The account that owns ``object_id``, if known."""

    def record_owner(self, object_id: str, account: str) -> None: ...

    def session_provider(self, session: str) -> str | None:
        """The provider that served ``session``'s last turn, if known."""

    def record_session(self, session: str, provider: str) -> None: ...

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
