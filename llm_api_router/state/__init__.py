"""Where provider state lives: in the process (default) or shared through Redis.

:class:`SharedState` is the one interface; :func:`create_state` picks the implementation
the config asks for.  Health, and later the accounts work, read and write only through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llm_api_router.config import RouterConfig
from llm_api_router.state.base import Circuit, SharedState, StateStatus
from llm_api_router.state.local import LocalState

__all__ = ["Circuit", "LocalState", "SharedState", "StateStatus", "create_state"]


def create_state(config: RouterConfig, clock: Callable[[], float] = time.monotonic) -> SharedState:
    """A :class:`LocalState`, or a ``RedisState`` when the config names a Redis."""
    settings = config.settings
    url = config.state.redis_url
    if url is None:
        return LocalState(
            clock=clock,
            owner_records_max=settings.owner_records_max,
            owner_records_ttl=settings.owner_records_ttl,
        )
    # Imported here: redis-py is only loaded by deployments that share state.
    from llm_api_router.state.redis_state import RedisState

    return RedisState(
        url.get_secret_value(),
        key_prefix=config.state.key_prefix,
        clock=clock,
        owner_records_max=settings.owner_records_max,
        owner_records_ttl=settings.owner_records_ttl,
    )
