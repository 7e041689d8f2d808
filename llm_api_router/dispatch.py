"""The one retry/fallback loop: asks routing for an order, calls upstream, records health.

A :class:`Dispatcher` serves one API family.  For a request it walks the planned
providers; each attempt's outcome is classified by :class:`~llm_api_router.routing.RoutingPolicy`
and recorded in that provider's :class:`~llm_api_router.health.ProviderHealth`.  Streaming
requests are committed only after the upstream's status, headers and first event are in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_api_router.accounts import Accounts
from llm_api_router.config import ProviderConfig, Settings
from llm_api_router.errors import (
    AccountUnavailable,
    AllProvidersFailed,
    AttemptRecord,
    ClientRequestError,
    LocalResourceError,
    NoProviderError,
    UpstreamTimeout,
    UpstreamTransportError,
)
from llm_api_router.families import ApiFamily, ChatRequest, Fallback, LimitClass, StreamTracker
from llm_api_router.headers import pass_back_headers
from llm_api_router.health import HealthSnapshot, ProviderHealth
from llm_api_router.routing import (
    Action,
    Candidate,
    Effect,
    RoutingPolicy,
    ScopeLimits,
    Verdict,
    ready_at,
)
from llm_api_router.scrub import ScrubbedResponse, SecretScrubber
from llm_api_router.sse import SSEDecoder, SSEEvent
from llm_api_router.state import LocalState, SharedState
from llm_api_router.streaming import RawRelay, StreamOutcome, StreamRelay, first_events
from llm_api_router.upstream import Transport, UpstreamResponse

__all__ = ["Dispatcher", "Reply", "StreamReply"]

logger = logging.getLogger("llm_api_router.dispatch")

_STREAM_OK = Verdict(Action.RETURN, "ok", Effect.SUCCESS)
_NOT_FOUND_OUTCOME = "not_found"
_EMPTY_STREAM = Verdict(Action.RETRY, "empty_stream", Effect.FAILURE)
#: Media types of answers relayed as they come instead of read whole (audio, downloads...).
_READ_WHOLE_TYPES = ("application/json", "text/json", "text/plain", "text/html")

Clock = Callable[[], float]


@dataclass(slots=True)
class Reply:
    """A complete answer for the client (a success or an upstream error passed through)."""

    status: int
    headers: dict[str, str]
    body: bytes
    provider: str
    attempts: list[AttemptRecord]
    #: Why the request was kept on one account or provider ("owner:<account>", "session").
    pinned: str | None = None


@dataclass(slots=True)
class StreamReply:
    """A committed stream: headers are final, ``relay`` yields the body."""

    status: int
    headers: dict[str, str]
    provider: str
    attempts: list[AttemptRecord]
    relay: StreamRelay | RawRelay = field(repr=False)
    pinned: str | None = None


@dataclass(slots=True)
class _Call:
    """How one request is routed: its plan and what its attempts are judged by."""

    plan: list[Candidate]
    providers: tuple[tuple[ProviderConfig, ProviderHealth], ...]
    model: str | None
    mode: Fallback
    limit: LimitClass
    limits: ScopeLimits
    #: Some provider of the plan was available when it was made.
    open: bool
    references: list[str]
    owns: bool
    #: The account the request is pinned to (it owns an object the request refers to).
    owner: str | None
    pinned: str | None
    session: str | None
    preferred: str | None


class Dispatcher:
    """Routes the requests of one family over its providers."""

    def __init__(
        self,
        family: ApiFamily,
        providers: Sequence[ProviderConfig],
        settings: Settings,
        transport: Transport,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        scrubber: SecretScrubber | None = None,
        state: SharedState | None = None,
    ) -> None:
        self.family = family
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._policy = RoutingPolicy(family, settings)
        self._rotation = 0
        # One state for every provider of the family (an in-process one in unit tests).
        state = state if state is not None else LocalState(clock=clock)
        self._state = state
        self._accounts = Accounts(family, state, clock)
        self.providers: tuple[tuple[ProviderConfig, ProviderHealth], ...] = tuple(
            (
                provider,
                ProviderHealth(
                    threshold=settings.circuit_breaker_threshold,
                    open_seconds=settings.circuit_breaker_cooldown,
                    key=f"{family.name}/{provider.name}",
                    state=state,
                ),
            )
            for provider in providers
        )
        # Built once: the hot path only merges them into each attempt's headers.
        self._auth = {provider.name: family.auth_headers(provider) for provider in providers}
        # Every byte an upstream sends back is scrubbed of every configured key.
        self._scrubber = scrubber or SecretScrubber(
            provider.api_key.get_secret_value() for provider in providers
        )
        self._chat = family.operations.find("POST", family.chat_path)

    async def dispatch(
        self,
        request: ChatRequest,
        client_headers: Mapping[str, str],
        query: str,
        *,
        eligible: Callable[[ProviderConfig], bool] | None = None,
    ) -> Reply | StreamReply:
        """Answer ``request`` from the best provider that can, or raise a RouterError."""
        family = self.family
        if not self.providers:
            prefix = family.name.upper()
            raise NoProviderError(
                503,
                f"No {family.name} provider is configured. Add one to the '{family.name}' "
                f"list of the config file, or set {prefix}_API_KEY.",
                "no_provider",
            )
        call = self._route(request, client_headers, eligible)
        accounts = self._accounts
        path = request.path or family.chat_path
        attempts: list[AttemptRecord] = []
        only_rate_limits, rate_limited = True, False
        not_found: Reply | None = None
        for index, candidate in enumerate(call.plan):
            health = candidate.health
            if index and call.open and ready_at(candidate, call.limits) > self._clock():
                continue  # a sibling key of its account was just rate limited for this
            gate = None if call.owner is not None else accounts.retry_gate(candidate, call.limit)
            if gate is not None and not self._state.claim_probe(gate, self._clock()):
                if call.open:
                    continue  # another request is trying this account again after its limit
                gate = None  # the last resort is tried all the same
            if not health.begin_attempt(self._clock()):
                if gate is not None:
                    accounts.release(gate)
                continue  # another request is probing this provider's circuit
            provider = candidate.provider
            url = family.upstream_url(provider.base_url, path, query)
            body = self._body_for(request, candidate.upstream_model)
            # Credentials last: nothing the client sends can replace them.
            headers = {**family.default_headers, **client_headers, **self._auth[provider.name]}
            if request.content_type:
                headers["content-type"] = request.content_type
            for retry in range(provider.max_retries + 1):
                started = self._clock()
                try:
                    verdict, answer = await self._attempt(
                        candidate, url, headers, body, request, call
                    )
                except BaseException:
                    health.release()  # cancelled (client gone): no verdict on the provider
                    if gate is not None:
                        accounts.release(gate)
                    raise
                status = answer.status if answer is not None else None
                attempts.append(
                    AttemptRecord(provider.name, verdict.outcome, status, self._clock() - started)
                )
                self._record(candidate, verdict, call)
                if gate is not None:
                    accounts.retried(gate, verdict.rate_limited)
                    gate = None
                if verdict.action is Action.RETURN and answer is not None:
                    return self._answered(answer, attempts, candidate, call)
                if verdict.outcome == _NOT_FOUND_OUTCOME:
                    if isinstance(answer, Reply):
                        not_found = answer  # given back if no account has it
                else:
                    only_rate_limits = only_rate_limits and verdict.rate_limited
                    rate_limited = rate_limited or verdict.rate_limited
                if verdict.action is Action.STOP:
                    raise AllProvidersFailed(attempts, None)
                if (
                    verdict.action is Action.RETRY
                    and retry < provider.max_retries
                    and health.is_available(self._clock())
                ):
                    await self._sleep(self._policy.backoff(retry, self._rng))
                    continue
                break
        if not_found is not None and not rate_limited:
            not_found.attempts = attempts
            return not_found
        retry_after = (
            self._policy.retry_after(call.providers, call.model, self._clock(), call.limits)
            if only_rate_limits
            else None
        )
        if call.owner is not None:
            raise AccountUnavailable(family.name, call.owner, retry_after, attempts)
        raise AllProvidersFailed(attempts, retry_after)

    def snapshots(self, now: float) -> list[tuple[ProviderConfig, HealthSnapshot]]:
        """Each provider's state, a limit of its account counting as its cooldown."""
        limited = self._accounts.limited_until(now)
        return [
            (provider, health.snapshot(now, limited.get(provider.account_name, 0.0)))
            for provider, health in self.providers
        ]

    def cooldowns(self, now: float) -> list[dict[str, Any]]:
        """The account limits cooling down now, with the time left (for /health)."""
        return [
            {
                "scope": kind,
                "account": account,
                "model": model,
                "limit_class": limit,
                "seconds_left": round(until - now, 3),
            }
            for kind, account, model, limit, until in self._accounts.cooling(now)
        ]

    def _route(
        self,
        request: ChatRequest,
        client_headers: Mapping[str, str],
        eligible: Callable[[ProviderConfig], bool] | None,
    ) -> _Call:
        """Which providers may serve ``request``, in what order, and why (SPEC 4 and 10)."""
        family, accounts = self.family, self._accounts
        operation = request.operation or self._chat
        model = request.model if operation.generation else None
        providers = self.providers
        if eligible is not None:
            providers = tuple(entry for entry in providers if eligible(entry[0]))
        references = (
            accounts.references(request, request.path or family.chat_path)
            if operation.refers
            else []
        )
        owner = accounts.owner(references) if references else None
        pinned: str | None = None
        if owner is not None:
            owned = tuple(entry for entry in providers if entry[0].account_name == owner)
            if owned:  # else the account left the config: look for the object everywhere
                providers, pinned = owned, f"owner:{owner}"
        session = (
            accounts.session(client_headers, request)
            if self._settings.session_affinity and operation.generation
            else None
        )
        preferred = accounts.preferred(session)
        limits = accounts.limits(operation.limit_class, pinned=pinned is not None)
        now = self._clock()
        self._rotation += 1
        plan = self._policy.plan(
            providers, model, now, self._rotation, limits=limits, prefer=preferred
        )
        if not plan:
            raise NoProviderError(
                404,
                f"The model '{request.model}' is not served by any configured "
                f"{family.name} provider.",
                "model_not_found",
            )
        # The plan holds every available provider, or only the one ready first when none is.
        is_open = len(plan) > 1 or (
            ready_at(plan[0], limits) <= now and plan[0].health.is_available(now)
        )
        if owner is not None and pinned is not None and not is_open:
            rate_limited = any(limits(c) > now or c.health.ready_at() > now for c in plan)
            retry_after = (
                self._policy.retry_after(providers, model, now, limits) if rate_limited else None
            )
            raise AccountUnavailable(family.name, owner, retry_after, [])
        if preferred is not None and plan[0].provider.name == preferred:
            pinned = pinned or "session"
        return _Call(
            plan=plan,
            providers=providers,
            model=model,
            mode=operation.fallback(request.method),
            limit=operation.limit_class,
            limits=limits,
            open=is_open,
            references=references,
            owns=operation.owns,
            owner=owner if pinned is not None else None,
            pinned=pinned,
            session=session,
            preferred=preferred,
        )

    def _answered(
        self,
        answer: Reply | StreamReply,
        attempts: list[AttemptRecord],
        candidate: Candidate,
        call: _Call,
    ) -> Reply | StreamReply:
        """Bookkeeping for the answer a client gets: owners, the session, the pin."""
        answer.attempts = attempts
        answer.pinned = call.pinned
        account = candidate.provider.account_name
        self._accounts.remember(call.session, candidate.provider.name, call.preferred)
        if not 200 <= answer.status < 300:
            return answer
        if isinstance(answer, Reply):
            if call.owns or call.references:
                self._accounts.record(answer.body if call.owns else b"", call.references, account)
        elif call.owns or call.references:
            self._accounts.record(b"", call.references, account)
            if call.owns and isinstance(answer.relay, StreamRelay):
                answer.relay.on_final(lambda final: self._accounts.record(final, (), account))
        return answer

    # -- one attempt ----------------------------------------------------------------------

    async def _attempt(
        self,
        candidate: Candidate,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        request: ChatRequest,
        call: _Call,
    ) -> tuple[Verdict, Reply | StreamReply | None]:
        provider = candidate.provider
        mode = call.mode
        if request.stream:
            return await self._attempt_stream(candidate, url, headers, body, request, call)
        try:
            response = self._scrubbed(
                await self._transport.request(
                    url, headers, body, timeout=provider.timeout, method=request.method
                )
            )
        except UpstreamTransportError as exc:
            return self._policy.classify_transport(exc, mode), None
        media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if 200 <= response.status < 300 and media and not media.startswith(_READ_WHOLE_TYPES):
            # Audio, downloads, JSONL, events the client did not ask to follow: relayed as
            # they come, committed on the status and headers.
            relay = RawRelay(response, stall_timeout=provider.timeout)
            reply_headers = self._reply_headers(response.headers, media)
            return _STREAM_OK, StreamReply(response.status, reply_headers, provider.name, [], relay)
        try:
            data = await response.read()
        except UpstreamTransportError as exc:
            return self._policy.classify_transport(exc, mode), None
        finally:
            response.close()
        verdict = self._policy.classify_response(
            response.status,
            response.headers,
            data,
            wall_now=self._wall_clock(),
            mode=mode,
            refers=bool(call.references),
        )
        if request.operation is not None and request.operation.rewrites_urls and request.origin:
            data = self._rewrite_urls(data, provider, request.origin)
        reply = Reply(
            status=response.status,
            headers=self._reply_headers(response.headers, "application/json"),
            body=data,
            provider=provider.name,
            attempts=[],
        )
        return verdict, reply

    async def _attempt_stream(
        self,
        candidate: Candidate,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        request: ChatRequest,
        call: _Call,
    ) -> tuple[Verdict, Reply | StreamReply | None]:
        """Send a streaming attempt; read up to its first event before deciding.

        ``first_token_timeout`` bounds everything until that first event: connecting, the
        status line and headers, and the event itself.
        """
        provider = candidate.provider
        decoder = SSEDecoder()
        tracker = self.family.new_stream_tracker(request)
        response: UpstreamResponse | None = None
        keep_open = False
        first_token_timeout = provider.first_token_timeout or self._settings.first_token_timeout
        try:
            async with asyncio.timeout(first_token_timeout):
                response = self._scrubbed(
                    await self._transport.request(
                        url, headers, body, timeout=provider.timeout, method=request.method
                    )
                )
                media = response.headers.get("content-type", "")
                if not 200 <= response.status < 300 or "json" in media:
                    data = await response.read()
                    verdict = self._policy.classify_response(
                        response.status,
                        response.headers,
                        data,
                        wall_now=self._wall_clock(),
                        refers=bool(call.references),
                    )
                    headers_back = self._reply_headers(response.headers, "application/json")
                    return verdict, Reply(response.status, headers_back, data, provider.name, [])
                first = await first_events(response, decoder, tracker)
                keep_open = True
        except TimeoutError:
            return self._policy.classify_transport(UpstreamTimeout("first_token_timeout")), None
        except UpstreamTransportError as exc:
            return self._policy.classify_transport(exc), None
        finally:
            # Closed on every path but a first event, cancellation (client gone) included.
            if response is not None and not keep_open:
                response.close()
        return self._commit(candidate, response, decoder, tracker, first, request)

    def _commit(
        self,
        candidate: Candidate,
        response: UpstreamResponse,
        decoder: SSEDecoder,
        tracker: StreamTracker,
        first: list[SSEEvent] | None,
        request: ChatRequest,
    ) -> tuple[Verdict, Reply | StreamReply | None]:
        """Commit to a stream whose first output is fine; otherwise judge its error."""
        provider = candidate.provider
        if first is None:
            response.close()
            return _EMPTY_STREAM, None
        for event in first:
            info = None if event.is_comment else tracker.observe(event)
            if info is None:
                continue
            status = self.family.stream_error_status(info)
            verdict = self._policy.classify_error(
                status, response.headers, info, wall_now=self._wall_clock()
            )
            if verdict.action is not Action.RETURN:
                response.close()
                return verdict, None
            if tracker.terminal:
                break  # an in-band failed response is the upstream's answer: relayed whole
            # The request itself is wrong: answer with that error as a plain HTTP error.
            response.close()
            body = event.data.encode()
            reply = Reply(status, {"content-type": "application/json"}, body, provider.name, [])
            return verdict, reply
        health, clock = candidate.health, self._clock

        def on_end(outcome: str) -> None:
            if outcome in StreamOutcome.FAILURES:
                health.record_failure(clock(), f"stream_{outcome}")

        relay = StreamRelay(
            self.family,
            response,
            decoder,
            tracker,
            b"".join(event.raw for event in first),
            provider=provider.name,
            stall_timeout=provider.timeout,
            on_end=on_end,
        )
        headers = self._reply_headers(response.headers, "text/event-stream")
        return _STREAM_OK, StreamReply(response.status, headers, provider.name, [], relay)

    # -- bookkeeping ----------------------------------------------------------------------

    def _record(self, candidate: Candidate, verdict: Verdict, call: _Call) -> None:
        health, now = candidate.health, self._clock()
        effect = verdict.effect
        if effect is Effect.SUCCESS:
            health.record_success()
        elif effect is Effect.FAILURE:
            health.record_failure(now, verdict.outcome)
        elif effect is Effect.COOLDOWN:
            # A rate limit cools down what it limits (the account's model and operation),
            # missing credit the whole account; a rejected key only itself.
            until = now + verdict.cooldown
            if self._accounts.cool_down(candidate, call.limit, verdict.outcome, until):
                health.answered(now, verdict.outcome)
            else:
                health.cool_down(now, verdict.cooldown, verdict.outcome)
        else:
            health.release()
        if verdict.outcome == LocalResourceError.kind:
            logger.error(
                "%s request to provider %r failed for want of local resources (file "
                "descriptors or memory) on this router: raise its limits (ulimit -n) or "
                "lower the load. The provider is not marked.",
                self.family.name,
                candidate.provider.name,
            )
        if verdict.loud:
            logger.error(
                "%s provider %r answered %s: its key is rejected or out of credit; "
                "it is skipped for %.0f s. Check its api_key and billing.",
                self.family.name,
                candidate.provider.name,
                verdict.outcome,
                verdict.cooldown,
            )

    def _rewrite_urls(self, data: bytes, provider: ProviderConfig, origin: str) -> bytes:
        """Point absolute upstream URLs (a batch's ``results_url``) at the router, so the
        client's follow-up comes back through it, with the router's credentials."""
        upstream = (provider.base_url + self.family.upstream_prefix + "/").encode()
        ours = f"{origin}/{self.family.name}{self.family.upstream_prefix}/".encode()
        return data.replace(upstream, ours) if upstream in data else data

    def _reply_headers(self, upstream: Mapping[str, str], default_type: str) -> dict[str, str]:
        headers = pass_back_headers(upstream)
        headers["content-type"] = upstream.get("content-type", default_type)
        if self._scrubber:
            scrub = self._scrubber.scrub_text
            return {name: scrub(value) for name, value in headers.items()}
        return headers

    def _scrubbed(self, response: UpstreamResponse) -> UpstreamResponse:
        return ScrubbedResponse(response, self._scrubber.stream()) if self._scrubber else response

    @staticmethod
    def _body_for(request: ChatRequest, upstream_model: str | None) -> bytes:
        if upstream_model is None or upstream_model == request.model or request.data is None:
            return request.body  # forwarded byte for byte
        # Only renames re-serialise.  The stdlib keeps integers of any size exactly (orjson
        # would turn those past 64 bits into floats) and ASCII escapes keep lone surrogates.
        try:
            data = json.loads(request.body)
            data["model"] = upstream_model
            return json.dumps(data, separators=(",", ":")).encode()
        except RecursionError:
            raise ClientRequestError(
                400,
                "The request body is nested too deeply for this router to rename its model.",
            ) from None
