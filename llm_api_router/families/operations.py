"""Operations: what each path under a family is, as data (SPEC section 9).

An :class:`Operation` says what the router must read from a request (``model``,
``stream``), how its stream is followed, and when an attempt may move on to the next
provider.  Each family declares one ordered table of them; the first whose pattern and
method match a request's path wins, and the last row of every table matches anything.
The one retry/fallback loop serves every operation from these rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "Fallback",
    "LimitClass",
    "Operation",
    "OperationTable",
    "StreamFormat",
]


class Fallback(Enum):
    """When an attempt may be abandoned for the next provider."""

    #: Generation: the whole SPEC section 4 table (retries, cooldowns, context length...).
    FULL = "full"
    #: A read (GET/HEAD): any failure, a 404 included, moves on; nothing can be repeated.
    READ = "read"
    #: The upstream may have acted (creates, deletes, anything unknown): move on only when
    #: it surely did not (connection refused, rate limited, overloaded, key rejected).
    UNSURE = "unsure"


class StreamFormat(Enum):
    """How a streamed answer of an operation ends and fails."""

    CHAT = "chat"  # OpenAI chunks with choices/finish_reason and data: [DONE]
    RESPONSES = "responses"  # OpenAI Responses events ending in response.completed
    MESSAGES = "messages"  # Anthropic events ending in message_stop


class LimitClass(Enum):
    """Which upstream limit an operation counts against (SPEC section 10)."""

    GENERATE = "generate"
    EMBEDDINGS = "embeddings"
    COUNT_TOKENS = "count_tokens"
    FILES = "files"
    BATCHES = "batches"
    OTHER = "other"

    # Members are singletons compared by identity: hash them so too, in C (Enum's own
    # __hash__ is Python, and a limit class is part of a dict key on every request).
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class Operation:
    """One row of a family's operation table."""

    #: The label in logs and metrics ("chat", "responses", "embeddings", ...).
    name: str
    #: Matched (fullmatch) against the path below the family, without a leading ``v1/``.
    pattern: str
    #: Methods this row applies to; empty: any method.
    methods: frozenset[str] = frozenset()
    #: Routed by the body's ``model`` (renaming included) with the full fallback table.
    generation: bool = False
    #: JSON body fields that must be present (generation operations).
    required: tuple[str, ...] = ()
    #: The format of its streamed answers, if it streams.
    stream: StreamFormat | None = None
    limit_class: LimitClass = LimitClass.OTHER
    #: Absolute upstream URLs in its answers are rewritten to point at the router.
    rewrites_urls: bool = False
    #: Answered from the router's model catalogue (``GET models``, ``GET models/{id}``).
    model_list: bool = False
    #: Its body may be ``multipart/form-data`` (uploads), read for ``model`` only.
    accepts_form: bool = False
    #: Its answers hand out ids of account-owned objects (recorded with their account).
    owns: bool = False
    #: Its requests may refer to owned objects (in the path or the body): they go to the
    #: account that owns them (SPEC section 10).
    refers: bool = False
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def matches(self, method: str, path: str) -> bool:
        return (not self.methods or method in self.methods) and self._regex.fullmatch(
            path
        ) is not None

    def fallback(self, method: str) -> Fallback:
        if self.generation:
            return Fallback.FULL
        return Fallback.READ if method in _SAFE_METHODS else Fallback.UNSURE


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class OperationTable:
    """A family's operations, first match wins; ``fallback`` serves every other path."""

    __slots__ = ("_cache", "_rows", "fallback")

    def __init__(self, rows: tuple[Operation, ...], fallback: Operation) -> None:
        self._rows = rows
        self.fallback = fallback
        self._cache: dict[tuple[str, str], Operation] = {}

    @property
    def rows(self) -> tuple[Operation, ...]:
        return (*self._rows, self.fallback)

    def find(self, method: str, path: str) -> Operation:
        """The operation for ``method`` on ``path`` (below the family, no ``v1/``)."""
        key = (method, path)
        found = self._cache.get(key)
        if found is not None:
            return found
        found = next((op for op in self._rows if op.matches(method, path)), self.fallback)
        if len(self._cache) < 1024 and not any(ch.isdigit() for ch in path):
            # Fixed paths only: object ids would grow the cache without bound.
            self._cache[key] = found
        return found
