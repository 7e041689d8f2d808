"""What the fake received and what it will do next: recorded requests and behaviour queues."""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from .behaviours import KINDS, Behaviour, Ok

__all__ = ["Family", "RecordedRequest", "State"]

Family: TypeAlias = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by the fake: an immutable snapshot (call ``requests()`` again to
    see later changes of ``disconnected_at`` / ``completed``).

    ``family`` and ``operation`` (e.g. ``"responses.create"``, ``"files.content"``) are ``None``
    for paths that matched no API (answered 404). ``body`` holds the raw bytes as received
    (multipart uploads included). ``disconnected_at``
    (``time.monotonic()``) is set when the client went away before the response ended;
    ``completed`` is true once the whole scripted response was sent.
    """

    provider: str
    family: Family | None
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float
    disconnected_at: float | None = None
    completed: bool = False
    operation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (``body`` decoded as UTF-8 text)."""
        out = dataclasses.asdict(self)
        out["body"] = self.body.decode("utf-8", errors="replace")
        return out


class State:
    """Queues, defaults and records, shared by the server loop and test threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        # Keyed by (provider, operation); operation None: any endpoint of the provider.
        self._queues: dict[tuple[str, str | None], deque[Behaviour]] = {}
        self._defaults: dict[tuple[str, str | None], Behaviour] = {}
        self._records: list[RecordedRequest] = []
        self._counts: dict[str, int] = {}
        self._generation = 0

    def script(
        self, provider: str, behaviours: Sequence[Behaviour], operation: str | None = None
    ) -> None:
        for behaviour in behaviours:
            if not isinstance(behaviour, tuple(KINDS.values())):
                raise TypeError(f"not a behaviour: {behaviour!r}")
        with self._cond:
            self._queues.setdefault((provider, operation), deque()).extend(behaviours)

    def set_default(
        self, provider: str, behaviour: Behaviour, operation: str | None = None
    ) -> None:
        if not isinstance(behaviour, tuple(KINDS.values())):
            raise TypeError(f"not a behaviour: {behaviour!r}")
        with self._cond:
            self._defaults[(provider, operation)] = behaviour

    def reset(self) -> None:
        with self._cond:
            self._queues.clear()
            self._defaults.clear()
            self._records.clear()
            self._counts.clear()
            self._generation += 1
            self._cond.notify_all()

    def record(self, rec: RecordedRequest) -> tuple[int, int]:
        """Store ``rec``; return a handle for :meth:`update`."""
        with self._cond:
            self._records.append(rec)
            return self._generation, len(self._records) - 1

    def next_behaviour(self, provider: str, operation: str | None = None) -> tuple[Behaviour, int]:
        """Pop the provider's next behaviour for ``operation`` (its own queue first, then the
        provider's queue for any endpoint, then the defaults in the same order); also return
        the provider's request count (1-based)."""
        with self._cond:
            self._counts[provider] = count = self._counts.get(provider, 0) + 1
            keys = [(provider, operation), (provider, None)] if operation else [(provider, None)]
            for key in keys:
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft(), count
            for key in keys:
                if key in self._defaults:
                    return self._defaults[key], count
            return Ok(), count

    def update(self, handle: tuple[int, int], **changes: Any) -> None:
        generation, index = handle
        with self._cond:
            if generation == self._generation:
                self._records[index] = dataclasses.replace(self._records[index], **changes)
                self._cond.notify_all()

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self._records if provider is None or r.provider == provider]

    def _find_disconnected(self, provider: str) -> RecordedRequest | None:
        for rec in reversed(self._records):
            if rec.provider == provider and rec.disconnected_at is not None:
                return rec
        return None

    def find_disconnected(self, provider: str) -> RecordedRequest | None:
        with self._cond:
            return self._find_disconnected(provider)

    def wait_for_disconnect(self, provider: str, timeout: float) -> RecordedRequest | None:
        with self._cond:
            self._cond.wait_for(lambda: self._find_disconnected(provider) is not None, timeout)
            return self._find_disconnected(provider)
