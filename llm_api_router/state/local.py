"""In-process provider state: the default, with no dependency and nothing in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from llm_api_router.config import DEFAULT_OWNER_RECORDS_MAX, DEFAULT_OWNER_RECORDS_TTL
from llm_api_router.state.base import DEFAULT_SESSION_TTL, Circuit, StateStatus
from llm_api_router.state.mirror import Mirror

__all__ = ["LocalState"]


class LocalState:
    """Every change stays in this process; ``status`` is always ``"off"``."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        owner_records_max: int = DEFAULT_OWNER_RECORDS_MAX,
        owner_records_ttl: float = DEFAULT_OWNER_RECORDS_TTL,
        session_ttl: float = DEFAULT_SESSION_TTL,
    ) -> None:
        self._mirror = Mirror(
            me="local",
            clock=clock,
            owner_records_max=owner_records_max,
            owner_records_ttl=owner_records_ttl,
            session_ttl=session_ttl,
        )

    @property
    def status(self) -> StateStatus:
        return "off"

    def quiet(self) -> bool:
        return self._mirror.quiet()

    def cooldown_until(self, scope: str) -> float:
        return self._mirror.cooldown_until(scope)

    def extend_cooldown(self, scope: str, until: float) -> None:
        self._mirror.extend_cooldown(scope, until)

    def cooldowns(self, now: float) -> dict[str, float]:
        return self._mirror.cooldowns(now)

    def circuit(self, key: str) -> Circuit | None:
        return self._mirror.circuit(key)

    def open_circuit(self, key: str, until: float) -> None:
        self._mirror.open_circuit(key, until)

    def close_circuit(self, key: str) -> None:
        self._mirror.close_circuit(key)

    def probe_available(self, key: str, now: float) -> bool:
        return self._mirror.probe_available(key, now)

    def claim_probe(self, key: str, now: float) -> bool:
        return self._mirror.claim_probe(key, now)

    def release_probe(self, key: str) -> None:
        self._mirror.release_probe(key)

    def owner(self, object_id: str) -> str | None:
        return self._mirror.owners.get(object_id)

    def record_owner(self, object_id: str, account: str) -> None:
        self._mirror.owners.put(object_id, account)

    def session_provider(self, session: str) -> str | None:
        return self._mirror.sessions.get(session)

    def record_session(self, session: str, provider: str) -> None:
        self._mirror.sessions.put(session, provider)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
