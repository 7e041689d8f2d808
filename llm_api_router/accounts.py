"""Accounts (SPEC section 10): who owns state, what a limit cools down, which session where.

A provider entry is one key; several keys can belong to one upstream account.  This module
turns that into decisions the dispatcher applies, reading and writing only through the
:class:`~llm_api_router.state.SharedState` (so with Redis they hold for the whole fleet):

- **scopes**: a rate limit cools down ``(account, model, limit class)``, so a sibling key of
  the account is not tried for that model and operation, while other models, operations and
  accounts are untouched; missing credit marks the whole account;
- **owners**: ids handed out in answers are recorded with their account, and a request that
  refers to one goes to that account only;
- **sessions**: a conversation prefers the provider that served its last turn.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence

from llm_api_router.config import ProviderConfig
from llm_api_router.families import ApiFamily, ChatRequest, LimitClass
from llm_api_router.routing import Candidate, ScopeLimits
from llm_api_router.state import SharedState

__all__ = ["ACCOUNT_MARKS", "RATE_LIMITS", "Accounts", "SESSION_HEADERS"]

#: Outcomes that cool down the account's (model, limit class) scope.
RATE_LIMITS = frozenset({"rate_limited", "overloaded"})
#: Outcomes that take the whole account out (no credit).
ACCOUNT_MARKS = frozenset({"quota_exhausted", "payment_required"})
#: How long other requests wait while one tries an account again after its limit.
_RETRY_WAIT = 0.05
#: Scope names kept ready at most (then the cache starts over).
_MAX_SCOPE_NAMES = 4096
#: Headers that name a conversation, first present wins (then the body's fields).
SESSION_HEADERS = ("x-claude-code-session-id", "session_id", "conversation_id")


class Accounts:
    """SPEC section 10 for one family, over the shared state."""

    __slots__ = ("_clock", "_family", "_prefix", "_scopes", "_state")

    def __init__(
        self, family: ApiFamily, state: SharedState, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._family = family
        self._state = state
        self._clock = clock
        self._prefix = family.name
        # Scope names by (provider, model, limit class, pinned): built once, not per request.
        self._scopes: dict[tuple[str, str | None, LimitClass, bool], tuple[str, str]] = {}

    # -- scopes ---------------------------------------------------------------------------

    def limit_scope(self, provider: ProviderConfig, model: str | None, limit: LimitClass) -> str:
        return f"limit/{self._prefix}/{provider.account_name}/{model or '*'}/{limit.value}"

    def account_scope(self, provider: ProviderConfig) -> str:
        return f"account/{self._prefix}/{provider.account_name}"

    def key_scope(self, provider: ProviderConfig, model: str | None, limit: LimitClass) -> str:
        return f"key/{self._prefix}/{provider.name}/{model or '*'}/{limit.value}"

    def limits(self, limit: LimitClass, *, pinned: bool = False) -> ScopeLimits:
        """When a candidate may next be asked for its model and ``limit``.

        Normally a limit of its account holds back every key of the account.  A request
        pinned to the account (it refers to an object only that account has) still tries
        a sibling key: keys of one account can sit in projects with limits of their own,
        and no other account can answer it.  Only the key that was limited waits then.
        """
        state = self._state
        until, clock, names_of, quiet = state.cooldown_until, self._clock, self._names, state.quiet

        def ready(candidate: Candidate) -> float:
            if quiet():
                return 0.0  # nothing is limited anywhere
            scope, account = names_of(candidate, limit, pinned)
            deadline = max(until(scope), until(account))
            if not pinned and state.circuit(scope) is not None:
                now = clock()
                if deadline <= now and not state.probe_available(scope, now):
                    # The limit is over, and another request (of any instance) is trying
                    # the account again: the others wait for its answer, a moment.
                    return now + _RETRY_WAIT
            return deadline

        return ready

    def retry_gate(self, candidate: Candidate, limit: LimitClass) -> str | None:
        """The scope whose one retry after a rate limit this attempt must claim, if any."""
        if self._state.quiet():
            return None
        scope = self._names(candidate, limit, False)[0]
        return scope if self._state.circuit(scope) is not None else None

    def _names(self, candidate: Candidate, limit: LimitClass, pinned: bool) -> tuple[str, str]:
        """The scope names of ``candidate``'s limit and of its account, built once."""
        provider, model = candidate.provider, candidate.upstream_model
        key = (provider.name, model, limit, pinned)
        names = self._scopes.get(key)
        if names is None:
            if len(self._scopes) >= _MAX_SCOPE_NAMES:
                self._scopes.clear()  # client model names are open-ended: stay bounded
            scope = (
                self.key_scope(provider, model, limit)
                if pinned
                else self.limit_scope(provider, model, limit)
            )
            names = self._scopes[key] = (scope, self.account_scope(provider))
        return names

    def cool_down(
        self, candidate: Candidate, limit: LimitClass, outcome: str, until: float
    ) -> bool:
        """Apply a cooldown verdict at the scope it limits; False: it is the key's own."""
        provider, model = candidate.provider, candidate.upstream_model
        if outcome in RATE_LIMITS:
            scope = self.limit_scope(provider, model, limit)
            self._state.extend_cooldown(scope, until)
            self._state.extend_cooldown(self.key_scope(provider, model, limit), until)
            # When it ends, one request of the whole fleet tries the account again (the
            # circuit machinery's half-open probe), not every request in flight at once.
            self._state.open_circuit(scope, until)
        elif outcome in ACCOUNT_MARKS:
            self._state.extend_cooldown(self.account_scope(provider), until)
        else:
            return False  # a rejected key (401/403) marks that key only
        return True

    def cooling(self, now: float) -> list[tuple[str, str, str | None, str | None, float]]:
        """Every limit of this family's accounts cooling at ``now``: (kind, account, model,
        limit class, deadline), for /health."""
        rows: list[tuple[str, str, str | None, str | None, float]] = []
        for scope, until in self._state.cooldowns(now).items():
            kind, _, rest = scope.partition("/")
            family, _, rest = rest.partition("/")
            if family != self._prefix or kind not in ("limit", "account"):
                continue
            if kind == "account":
                rows.append((kind, rest, None, None, until))
            else:
                # Accounts and limit classes have no '/'; a model name may.
                account, _, scoped = rest.partition("/")
                model, _, limit = scoped.rpartition("/")
                rows.append((kind, account, model, limit, until))
        return rows

    def limited_until(self, now: float) -> dict[str, float]:
        """Per account, when the last of its cooling limits ends (for provider states)."""
        until: dict[str, float] = {}
        for _, account, _, _, deadline in self.cooling(now):
            until[account] = max(until.get(account, 0.0), deadline)
        return until

    # -- owners ---------------------------------------------------------------------------

    def references(self, request: ChatRequest, path: str) -> list[str]:
        """Owned ids a request refers to, in its path or its body."""
        owned = self._family.owned
        found = owned.in_path(path)
        if request.body and request.content_type.startswith(("application/json", "text/json")):
            found.extend(owned.in_body(request.body))
        return found

    def owner(self, references: Sequence[str]) -> str | None:
        """The account that owns the first known id among ``references``."""
        for object_id in references:
            account = self._state.owner(object_id)
            if account is not None:
                return account
        return None

    def record(self, answer: bytes, references: Sequence[str], account: str) -> None:
        """Remember that the ids in ``answer`` (and those the request used) are ``account``'s."""
        state = self._state
        for object_id in (*self._family.owned.in_body(answer), *references):
            state.record_owner(object_id, account)

    # -- sessions -------------------------------------------------------------------------

    @staticmethod
    def session(headers: Mapping[str, str], request: ChatRequest) -> str | None:
        """The conversation a request belongs to (hashed: it may name a user), if any."""
        key: object = next((headers[h] for h in SESSION_HEADERS if headers.get(h)), None)
        data = request.data
        if key is None and data is not None:
            key = data.get("prompt_cache_key")
            metadata = data.get("metadata")
            if not key and isinstance(metadata, dict):
                key = metadata.get("user_id")
        if not isinstance(key, str) or not key:
            return None
        return "s:" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def preferred(self, session: str | None) -> str | None:
        return None if session is None else self._state.session_provider(session)

    def retried(self, gate: str, rate_limited: bool) -> None:
        """The answer to the one retry of ``gate``: a new limit re-opened it already."""
        if not rate_limited:
            self._state.close_circuit(gate)

    def release(self, gate: str) -> None:
        self._state.release_probe(gate)

    def remember(self, session: str | None, provider: str, preferred: str | None) -> None:
        if session is not None and provider != preferred:
            self._state.record_session(session, provider)
