"""Pure routing policy: which providers to try in what order, and what each outcome means.

This module is SPEC section 4 as code.  It imports neither the web framework nor the HTTP
client; the dispatcher feeds it outcomes and acts on its verdicts.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import groupby

import orjson

from llm_api_router.config import DEFAULT_MAX_COOLDOWN, ProviderConfig, Settings
from llm_api_router.errors import (
    LocalResourceError,
    UpstreamConnectError,
    UpstreamTimeout,
    UpstreamTransportError,
)
from llm_api_router.families import ApiFamily, Fallback, UpstreamErrorInfo
from llm_api_router.health import ProviderHealth

__all__ = [
    "MAX_COOLDOWN",
    "Action",
    "Candidate",
    "Effect",
    "RoutingPolicy",
    "ScopeLimits",
    "Verdict",
    "parse_retry_after",
    "ready_at",
]

#: Default upper bound for any Retry-After we honour (``settings.max_cooldown``).
MAX_COOLDOWN = DEFAULT_MAX_COOLDOWN


class Action(Enum):
    RETURN = "return"  # give this answer to the client
    RETRY = "retry"  # try the same provider again (within its max_retries), then the next
    NEXT = "next"  # go to the next provider at once
    STOP = "stop"  # no answer to give and no other provider to ask: fail the request now


class Effect(Enum):
    NONE = "none"
    SUCCESS = "success"  # the provider works
    FAILURE = "failure"  # counts toward its circuit breaker
    COOLDOWN = "cooldown"  # skip it for ``Verdict.cooldown`` seconds


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after one attempt, and what it says about the provider."""

    action: Action
    outcome: str
    effect: Effect
    cooldown: float = 0.0
    rate_limited: bool = False
    loud: bool = False  # an operator must hear about it (bad key, no credit)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A provider chosen for a request, with the model name to send it."""

    provider: ProviderConfig
    health: ProviderHealth
    #: The model name to send (None: the body is forwarded unchanged).
    upstream_model: str | None


_OK = Verdict(Action.RETURN, "ok", Effect.SUCCESS)
_CLIENT_ERROR = Verdict(Action.RETURN, "client_error", Effect.SUCCESS)
_MODEL_NOT_FOUND = Verdict(Action.NEXT, "model_not_found", Effect.NONE)
_CONTEXT_LENGTH = Verdict(Action.NEXT, "context_length_exceeded", Effect.NONE)
_SERVER_ERROR = Verdict(Action.RETRY, "server_error", Effect.FAILURE)
_REQUEST_TIMEOUT = Verdict(Action.RETRY, "request_timeout", Effect.FAILURE)
_INVALID_BODY = Verdict(Action.RETRY, "invalid_response", Effect.FAILURE)
_UNEXPECTED = Verdict(Action.NEXT, "unexpected_status", Effect.FAILURE)
_TIMEOUT = Verdict(Action.NEXT, "timeout", Effect.FAILURE)
_NOT_FOUND = Verdict(Action.NEXT, "not_found", Effect.NONE)
_ANSWERED = Verdict(Action.RETURN, "ok", Effect.SUCCESS)
_SERVER_ERROR_RETURNED = Verdict(Action.RETURN, "server_error", Effect.FAILURE)
_MAY_HAVE_ACTED = Verdict(Action.STOP, "timeout", Effect.FAILURE)
# The router's own lack of descriptors or memory: no verdict on any provider.
_LOCAL_RESOURCES = Verdict(Action.STOP, LocalResourceError.kind, Effect.NONE)
_AUTH_OUTCOMES: Mapping[int, str] = {401: "auth_failed", 402: "payment_required", 403: "forbidden"}


class RoutingPolicy:
    """Routing rules for one family under one set of :class:`Settings`."""

    __slots__ = ("_family", "_settings")

    def __init__(self, family: ApiFamily, settings: Settings) -> None:
        self._family = family
        self._settings = settings

    # -- order ----------------------------------------------------------------------------

    def plan(
        self,
        providers: Sequence[tuple[ProviderConfig, ProviderHealth]],
        model: str | None,
        now: float,
        rotation: int,
        *,
        limits: ScopeLimits | None = None,
        prefer: str | None = None,
    ) -> list[Candidate]:
        """The providers to try for ``model``, best first; empty if none serves it.

        ``model`` None (a request not routed by model): every provider, nothing renamed.
        Cooling providers are skipped (the provider itself, or ``limits`` for its account,
        model and limit class); if every one is cooling, the one that is ready first is
        still tried.  Equal priorities rotate by ``rotation`` to share load, except that
        the provider named ``prefer`` (a session's last one) goes first among its equals.
        """
        if model is None:
            serving = [Candidate(provider, health, None) for provider, health in providers]
        else:
            serving = [
                Candidate(provider, health, upstream)
                for provider, health in providers
                if (upstream := provider.upstream_model(model)) is not None
            ]
        if not serving:
            return []
        available = [
            c
            for c in serving
            if c.health.is_available(now) and (limits is None or limits(c) <= now)
        ]
        if not available:
            return [min(serving, key=lambda c: ready_at(c, limits))]
        available.sort(key=_priority)
        ordered: list[Candidate] = []
        for _, group in groupby(available, key=_priority):
            members = list(group)
            shift = rotation % len(members)
            members = members[shift:] + members[:shift]
            if prefer is not None:
                # A stable sort: the preferred one first, the rotation order otherwise kept.
                members.sort(key=lambda c: c.provider.name != prefer)
            ordered.extend(members)
        return ordered

    @staticmethod
    def retry_after(
        providers: Sequence[tuple[ProviderConfig, ProviderHealth]],
        model: str | None,
        now: float,
        limits: ScopeLimits | None = None,
    ) -> float:
        """Seconds until the first provider serving ``model`` is ready again (>= 1)."""
        ready = [
            ready_at(Candidate(p, h, model if model is None else p.upstream_model(model)), limits)
            for p, h in providers
            if model is None or p.upstream_model(model) is not None
        ]
        return float(max(1, math.ceil(min(ready, default=now) - now)))

    def backoff(self, retry_index: int, rng: random.Random) -> float:
        """Jittered exponential delay before retry number ``retry_index`` (0-based)."""
        settings = self._settings
        delay: float = settings.retry_backoff_base * (2.0**retry_index)
        return min(settings.retry_backoff_max, delay) * rng.uniform(0.5, 1.0)

    # -- outcomes -------------------------------------------------------------------------

    def classify_response(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        wall_now: float,
        mode: Fallback = Fallback.FULL,
        refers: bool = False,
    ) -> Verdict:
        """Judge a complete upstream answer (``body`` None: a stream's first event was fine).

        ``mode`` narrows what may move on to the next provider for operations that are
        not generation (SPEC section 9): reads move on after any failure, other requests
        only when the upstream surely did not act on them.
        """
        if 200 <= status < 300:
            if mode is Fallback.FULL and body is not None and not _is_json(body):
                return _INVALID_BODY
            return _OK if mode is Fallback.FULL else _ANSWERED
        info = self._family.error_info(body) if body else None
        if (refers or mode is not Fallback.FULL) and self._family.is_not_found(status, info):
            # Not this account's object (or path): nothing was done, the next may have it.
            return _NOT_FOUND
        verdict = self.classify_error(status, headers, info, wall_now=wall_now)
        if mode is Fallback.FULL:
            return verdict
        if verdict.effect is Effect.COOLDOWN:  # rate limited, overloaded, key or credit
            return verdict
        if mode is Fallback.READ and verdict.action is Action.RETRY:
            return verdict
        if status >= 500:
            return _SERVER_ERROR_RETURNED
        return _CLIENT_ERROR

    def classify_error(
        self,
        status: int,
        headers: Mapping[str, str],
        info: UpstreamErrorInfo | None,
        *,
        wall_now: float,
    ) -> Verdict:
        """Judge an upstream error: a non-2xx status, or an error event before the commit."""
        family, settings = self._family, self._settings
        if family.is_quota_error(status, info):
            return Verdict(
                Action.NEXT,
                "quota_exhausted",
                Effect.COOLDOWN,
                cooldown=settings.auth_failure_cooldown,
                loud=True,
            )
        if status in family.rate_limit_statuses:
            wait = parse_retry_after(headers, wall_now, cap=settings.max_cooldown)
            return Verdict(
                Action.NEXT,
                "rate_limited" if status == 429 else "overloaded",
                Effect.COOLDOWN,
                cooldown=settings.rate_limit_cooldown if wait is None else wait,
                rate_limited=True,
            )
        if status in _AUTH_OUTCOMES:
            return Verdict(
                Action.NEXT,
                _AUTH_OUTCOMES[status],
                Effect.COOLDOWN,
                cooldown=settings.auth_failure_cooldown,
                loud=True,
            )
        if status == 404:
            return _MODEL_NOT_FOUND
        if status == 408:
            return _REQUEST_TIMEOUT
        if status >= 500:
            return _SERVER_ERROR
        if family.is_context_length_error(status, info):
            return _CONTEXT_LENGTH
        if 400 <= status < 500:
            return _CLIENT_ERROR
        return _UNEXPECTED

    @staticmethod
    def classify_transport(
        error: UpstreamTransportError, mode: Fallback = Fallback.FULL
    ) -> Verdict:
        """Judge an attempt that got no HTTP answer."""
        if isinstance(error, LocalResourceError):
            return _LOCAL_RESOURCES
        if mode is Fallback.UNSURE and not isinstance(error, UpstreamConnectError):
            # It may have been received and acted on: repeating it elsewhere could
            # create a second file or batch.
            return (
                _MAY_HAVE_ACTED
                if isinstance(error, UpstreamTimeout)
                else Verdict(Action.STOP, error.kind, Effect.FAILURE)
            )
        if isinstance(error, UpstreamTimeout):
            return _TIMEOUT  # a silent provider is not retried within the request
        return Verdict(Action.RETRY, error.kind, Effect.FAILURE)


def parse_retry_after(
    headers: Mapping[str, str], wall_now: float, *, cap: float = MAX_COOLDOWN
) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date), if any.

    Nonsense (not a number, infinite, negative) counts as absent; a long wait is capped
    at ``cap`` seconds, so no upstream can take a provider out of rotation for a day.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        seconds = _seconds(value)
        if seconds is not None:
            return min(seconds / 1000.0, cap)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return min(seconds, cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - wall_now, 0.0), cap)  # a past date: ready now


def _seconds(value: str) -> float | None:
    """A finite, non-negative number of seconds, or None."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


#: When a candidate's account, model and limit class may next be tried (0: now).
ScopeLimits = Callable[[Candidate], float]


def ready_at(candidate: Candidate, limits: ScopeLimits | None) -> float:
    """When ``candidate`` may next be tried: its own health and its account's limits."""
    ready = candidate.health.ready_at()
    return ready if limits is None else max(ready, limits(candidate))


def _priority(candidate: Candidate) -> int:
    return candidate.provider.priority


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True
