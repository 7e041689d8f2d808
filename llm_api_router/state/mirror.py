"""The in-memory picture of provider state: what every routing decision reads.

Sans-IO: plain data and merge rules, fed with times from the caller's clock.  The local
state is a mirror that nobody else writes to; the Redis state keeps one current with what
other processes publish.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from llm_api_router.state.base import PROBE_LEASE, Circuit

__all__ = ["Mirror", "Records"]

Clock = Callable[[], float]


class Records:
    """A bounded map of short strings with an expiry: the oldest write is evicted first."""

    __slots__ = ("_clock", "_items", "_max", "_ttl")

    def __init__(self, max_items: int, ttl: float, clock: Clock) -> None:
        self._max = max_items
        self._ttl = ttl
        self._clock = clock
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @property
    def ttl(self) -> float:
        return self._ttl

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> str | None:
        found = self._items.get(key)
        if found is None:
            return None
        value, expires = found
        if self._clock() >= expires:
            del self._items[key]
            return None
        return value

    def put(self, key: str, value: str, expires: float | None = None) -> None:
        """Remember ``key``; ``expires`` defaults to now + ttl."""
        if expires is None:
            expires = self._clock() + self._ttl
        if expires <= self._clock():
            return
        items = self._items
        items[key] = (value, expires)
        items.move_to_end(key)
        while len(items) > self._max:
            items.popitem(last=False)


class Mirror:
    """Cooldowns, circuits, owner records and sessions, and how changes merge.

    ``me`` names this process in probe ownership.  A cooldown only ever grows; a circuit
    change from elsewhere carries a sequence number and an older one is ignored.
    """

    def __init__(
        self,
        *,
        me: str,
        clock: Clock,
        owner_records_max: int,
        owner_records_ttl: float,
        session_ttl: float,
    ) -> None:
        self.me = me
        self._clock = clock
        self._cooldowns: dict[str, float] = {}
        self._horizon = 0.0  # no cooldown lasts beyond this
        self._prune_at = 64
        self._circuits: dict[str, Circuit] = {}
        self.owners = Records(owner_records_max, owner_records_ttl, clock)
        self.sessions = Records(owner_records_max, session_ttl, clock)

    # -- cooldowns ------------------------------------------------------------------------

    def quiet(self) -> bool:
        """Nothing cools down and no circuit is open or probing: every scope is ready.

        The healthy case, decided without looking at any scope.
        """
        if self._circuits:
            return False
        if self._cooldowns:
            if self._clock() < self._horizon:
                return False
            self._cooldowns.clear()  # every one is over
        return True

    def cooldown_until(self, scope: str) -> float:
        return self._cooldowns.get(scope, 0.0)

    def extend_cooldown(self, scope: str, until: float) -> bool:
        """Merge a deadline; True when it moved ``scope``'s cooldown later."""
        if until <= self._cooldowns.get(scope, 0.0):
            return False
        self._cooldowns[scope] = until
        self._horizon = max(self._horizon, until)
        if len(self._cooldowns) >= self._prune_at:
            self.cooldowns(self._clock())
            self._prune_at = max(64, 2 * len(self._cooldowns))
        return True

    def cooldowns(self, now: float) -> dict[str, float]:
        """The scopes still cooling down (expired ones are forgotten)."""
        expired = [scope for scope, until in self._cooldowns.items() if until <= now]
        for scope in expired:
            del self._cooldowns[scope]
        return dict(self._cooldowns)

    # -- circuits -------------------------------------------------------------------------

    def circuit(self, key: str) -> Circuit | None:
        return self._circuits.get(key)

    def circuits(self) -> dict[str, Circuit]:
        return self._circuits

    def open_circuit(self, key: str, until: float) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            self._circuits[key] = Circuit(open_until=until)
            return
        circuit.open_until = until if circuit.open_until is None else max(circuit.open_until, until)
        circuit.in_flight = False
        if circuit.probe_owner == self.me:
            circuit.probe_owner = None

    def close_circuit(self, key: str) -> None:
        self._circuits.pop(key, None)

    def probe_available(self, key: str, now: float) -> bool:
        """May this process take the probe, judging from this mirror alone?"""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.open_until is None:
            return True
        if now < circuit.open_until or circuit.in_flight:
            return False
        return not circuit.probe_held(now) or circuit.probe_owner == self.me

    def claim_probe(self, key: str, now: float) -> bool:
        if not self.probe_available(key, now):
            return False
        circuit = self._circuits.get(key)
        if circuit is None or circuit.open_until is None:
            return True  # closed meanwhile: an ordinary attempt
        circuit.probe_owner = self.me
        circuit.probe_until = now + PROBE_LEASE
        circuit.in_flight = True
        return True

    def release_probe(self, key: str) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            return
        circuit.in_flight = False
        if circuit.probe_owner == self.me:
            circuit.probe_owner = None

    def apply_circuit(
        self,
        key: str,
        open_until: float | None,
        probe_owner: str | None,
        probe_until: float,
        seq: int,
    ) -> bool:
        """Take a circuit's state as the shared store has it; False if ``seq`` is stale."""
        circuit = self._circuits.get(key)
        if circuit is not None and seq and seq <= circuit.seq:
            return False
        in_flight = (
            circuit is not None
            and circuit.in_flight
            and open_until is not None
            and probe_owner == self.me
        )
        if open_until is None and not in_flight:
            if circuit is None or not seq:
                self._circuits.pop(key, None)
            else:
                # Remember the sequence number so a late, older "open" is ignored.
                circuit.open_until, circuit.probe_owner, circuit.seq = None, None, seq
                circuit.in_flight = False
            return True
        self._circuits[key] = Circuit(open_until, probe_owner, probe_until, in_flight, seq)
        return True

    def forget_closed(self) -> None:
        """Drop closed circuits kept only for their sequence numbers."""
        for key in [k for k, c in self._circuits.items() if c.open_until is None]:
            del self._circuits[key]
