"""Provider state shared through Redis (or Valkey), read from a local mirror.

The request path never waits for Redis.  Reads come from the :class:`Mirror`; a change is
applied to the mirror at once and queued (bounded) for a writer task.  A listener task folds
other processes' changes into the mirror as Redis publishes them; a ticker pings, resyncs
periodically and claims due half-open probes.  When Redis is down or slow, all of that stops,
``status`` turns ``degraded`` (logged once), and the process decides from its own mirror
until a reconnect (with backoff) and a full resync.

The half-open probe is one per fleet: when a circuit's open period ends, processes race to
``SET NX PX`` a probe key; the winner's next request is the probe, the others skip the
provider until the verdict is published or the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from llm_api_router.config import DEFAULT_OWNER_RECORDS_MAX, DEFAULT_OWNER_RECORDS_TTL
from llm_api_router.state.base import (
    DEFAULT_SESSION_TTL,
    PROBE_CLAIM_LEASE,
    PROBE_LEASE,
    Circuit,
    StateStatus,
)
from llm_api_router.state.mirror import Mirror
from llm_api_router.state.scripts import (
    CIRCUIT,
    COOLDOWN,
    RECORD,
    SNAPSHOT,
    Event,
    Keys,
    hashed,
    parse_event,
)

__all__ = ["RedisState", "display_url"]

logger = logging.getLogger("llm_api_router.state")

Clock = Callable[[], float]

DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_TIMEOUT = 1.0
DEFAULT_RESYNC_INTERVAL = 5.0
DEFAULT_PING_INTERVAL = 1.0
TICK = 0.02
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
RECORD_SCAN_BATCH = 500

#: What a lost connection, a timeout or a refused command raises.
_REDIS_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


def display_url(url: str) -> str:
    """``url`` without its credentials, for logs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(slots=True)
class _Write:
    """One queued change: ``kind`` is cd, open, close, claim, extend, release, own or sess."""

    kind: str
    subject: str
    until: float = 0.0  # local deadline (cd, open)
    value: str = ""  # own, sess


class RedisState:
    """Shared provider state; see the module docstring.  Use as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        clock: Clock = time.monotonic,
        owner_records_max: int = DEFAULT_OWNER_RECORDS_MAX,
        owner_records_ttl: float = DEFAULT_OWNER_RECORDS_TTL,
        session_ttl: float = DEFAULT_SESSION_TTL,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        resync_interval: float = DEFAULT_RESYNC_INTERVAL,
        ping_interval: float = DEFAULT_PING_INTERVAL,
    ) -> None:
        self._url = url
        self._where = display_url(url)
        self._keys = Keys(key_prefix)
        self._clock = clock
        self._me = uuid.uuid4().hex[:16]
        self._mirror = Mirror(
            me=self._me,
            clock=clock,
            owner_records_max=owner_records_max,
            owner_records_ttl=owner_records_ttl,
            session_ttl=session_ttl,
        )
        self._timeout = timeout
        self._resync_interval = resync_interval
        self._ping_interval = ping_interval
        self._queue: asyncio.Queue[_Write] = asyncio.Queue(maxsize=queue_size)
        self._carry: _Write | None = None  # the write a lost connection interrupted
        self._pending: dict[str, int] = {}  # circuits with writes not yet answered
        self._claiming: set[str] = set()
        self._offset = 0.0  # Redis seconds - local clock seconds
        self._status: StateStatus = "degraded"
        self._announced = False
        self._dropping = False
        self._ready = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None

    # -- the request path: mirror reads, queued writes ------------------------------------

    @property
    def status(self) -> StateStatus:
        return self._status

    @property
    def instance(self) -> str:
        """This process's name in probe ownership."""
        return self._me

    def quiet(self) -> bool:
        return self._mirror.quiet()

    def cooldown_until(self, scope: str) -> float:
        return self._mirror.cooldown_until(scope)

    def extend_cooldown(self, scope: str, until: float) -> None:
        if self._mirror.extend_cooldown(scope, until):
            self._send(_Write("cd", scope, until))

    def cooldowns(self, now: float) -> dict[str, float]:
        return self._mirror.cooldowns(now)

    def circuit(self, key: str) -> Circuit | None:
        return self._mirror.circuit(key)

    def open_circuit(self, key: str, until: float) -> None:
        self._mirror.open_circuit(key, until)
        self._send(_Write("open", key, until))

    def close_circuit(self, key: str) -> None:
        self._mirror.close_circuit(key)
        self._send(_Write("close", key))

    def probe_available(self, key: str, now: float) -> bool:
        if self._status != "ok":
            return self._mirror.probe_available(key, now)
        circuit = self._mirror.circuit(key)
        if circuit is None or circuit.open_until is None:
            return True
        if now < circuit.open_until or circuit.in_flight:
            return False
        if circuit.probe_held(now):
            return circuit.probe_owner == self._me
        self._claim(key)  # due and unclaimed: race for it (the ticker does too)
        return False

    def claim_probe(self, key: str, now: float) -> bool:
        if self._status != "ok":
            return self._mirror.claim_probe(key, now)
        if not self.probe_available(key, now):
            return False
        circuit = self._mirror.circuit(key)
        if circuit is None or circuit.open_until is None:
            return True
        circuit.in_flight = True
        circuit.probe_until = now + PROBE_LEASE
        self._send(_Write("extend", key))
        return True

    def release_probe(self, key: str) -> None:
        circuit = self._mirror.circuit(key)
        mine = circuit is not None and circuit.probe_owner == self._me
        self._mirror.release_probe(key)
        if mine:
            self._send(_Write("release", key))

    def owner(self, object_id: str) -> str | None:
        return self._mirror.owners.get(hashed(object_id))

    def record_owner(self, object_id: str, account: str) -> None:
        digest = hashed(object_id)
        self._mirror.owners.put(digest, account)
        self._send(_Write("own", digest, value=account))

    def session_provider(self, session: str) -> str | None:
        return self._mirror.sessions.get(hashed(session))

    def record_session(self, session: str, provider: str) -> None:
        digest = hashed(session)
        self._mirror.sessions.put(digest, provider)
        self._send(_Write("sess", digest, value=provider))

    def _claim(self, key: str) -> None:
        if key not in self._claiming:
            self._claiming.add(key)
            self._send(_Write("claim", key))

    def _send(self, write: _Write) -> None:
        circuit_write = write.kind in _CIRCUIT_OPS
        try:
            self._queue.put_nowait(write)
        except asyncio.QueueFull:
            if not self._dropping:
                self._dropping = True
                logger.warning("shared state: write queue full; changes stay local for now")
            if write.kind == "claim":
                self._claiming.discard(write.subject)
            return
        if circuit_write:
            self._pending[write.subject] = self._pending.get(write.subject, 0) + 1

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._supervisor = asyncio.create_task(self._supervise(), name="llm-router-shared-state")
        # Start-up (not the request path) may wait a moment for the first sync.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        # redis-py may turn a cancellation into a connection error: ask again until it ends.
        while supervisor is not None and not supervisor.done():
            supervisor.cancel()
            await asyncio.wait({supervisor}, timeout=self._timeout)

    async def _supervise(self) -> None:
        """Connect, sync, run; on any Redis failure go degraded, back off, reconnect."""
        backoff = BACKOFF_FIRST
        while not self._closing:
            client = self._client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._timeout):
                    await pubsub.subscribe(self._keys.channel)
                scripts = _Scripts(client)
                await self._resync(client, scripts, full=True)
                self._set_ok()
                backoff = BACKOFF_FIRST
                await self._run(client, pubsub, scripts)
            except _REDIS_FAILURES as exc:
                if not self._closing:
                    self._set_degraded(exc)
            except Exception as exc:  # a bug must not end sharing for good
                logger.exception("shared state: unexpected %s", type(exc).__name__)
                self._set_degraded(exc)
            finally:
                await _close(pubsub, client)
            self._claiming.clear()
            if self._closing:
                return
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _client(self) -> Redis:
        return Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            health_check_interval=0,
        )

    async def _run(self, client: Redis, pubsub: PubSub, scripts: _Scripts) -> None:
        tasks = [
            asyncio.create_task(self._listen(pubsub)),
            asyncio.create_task(self._write(scripts)),
            asyncio.create_task(self._tick(client, scripts)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise what ended it
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _set_ok(self) -> None:
        if self._status != "ok":
            logger.info("shared state: connected to %s", self._where)
        self._status = "ok"
        self._announced = False
        self._dropping = False
        self._ready.set()

    def _set_degraded(self, exc: BaseException) -> None:
        if self._status == "ok" or not self._announced:
            logger.warning(
                "shared state: Redis at %s is unavailable (%s); serving from local state "
                "and reconnecting",
                self._where,
                type(exc).__name__,
            )
            self._announced = True
        self._status = "degraded"

    # -- background tasks -----------------------------------------------------------------

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                event = parse_event(message["data"])
                if event is not None and event.origin != self._me:
                    self._apply(event)

    def _apply(self, event: Event) -> None:
        mirror = self._mirror
        if event.kind == "cd":
            mirror.extend_cooldown(event.subject, self._local(event.deadline))
        elif event.kind == "cb":
            if not self._pending.get(event.subject):
                self._apply_circuit(
                    event.subject,
                    event.deadline,
                    event.probe_owner,
                    event.probe_until,
                    event.seq,
                )
        elif event.kind in ("own", "sess") and event.ttl > 0:
            records = mirror.owners if event.kind == "own" else mirror.sessions
            records.put(event.subject, event.value, self._clock() + event.ttl / 1000)

    def _apply_circuit(
        self, key: str, open_ms: int, owner: str, probe_ms: int, seq: int, force: bool = False
    ) -> None:
        # force (after a reconnect): Redis's word replaces the mirror's, sequence included,
        # since a restarted Redis starts counting again.
        self._mirror.apply_circuit(
            key,
            self._local(open_ms) if open_ms else None,
            owner or None,
            self._local(probe_ms) if owner else 0.0,
            0 if force else seq,
        )
        circuit = self._mirror.circuit(key)
        if force and circuit is not None:
            circuit.seq = seq

    async def _write(self, scripts: _Scripts) -> None:
        while True:
            write = self._carry or await self._queue.get()
            self._carry = write
            async with asyncio.timeout(self._timeout):
                await self._execute(scripts, write)
            self._carry = None

    async def _execute(self, scripts: _Scripts, write: _Write) -> None:
        keys, me = self._keys, self._me
        if write.kind == "cd":
            left = self._ms_left(write.until)
            if left > 0:
                await scripts.cooldown(
                    keys=[keys.cooldowns], args=[keys.channel, me, write.subject, left]
                )
            return
        if write.kind in ("own", "sess"):
            ttl = self._mirror.owners.ttl if write.kind == "own" else self._mirror.sessions.ttl
            await scripts.record(
                keys=[keys.record(write.kind, write.subject)],
                args=[keys.channel, me, write.kind, write.subject, write.value, int(ttl * 1000)],
            )
            return
        key = write.subject
        ms = {
            "open": self._ms_left(write.until),
            "claim": int(PROBE_CLAIM_LEASE * 1000),
            "extend": int(PROBE_LEASE * 1000),
        }.get(write.kind, 0)
        if write.kind == "open" and ms <= 0:
            ms = 1
        try:
            result = await scripts.circuit(
                keys=[keys.circuits, keys.probe(key), keys.seq],
                args=[keys.channel, me, key, write.kind, me, ms],
            )
        finally:
            left = self._pending.get(key, 1) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)
            if write.kind == "claim":
                self._claiming.discard(key)
        if left <= 0:
            _, seq, open_ms, owner, probe_ms = result
            self._apply_circuit(key, int(open_ms), str(owner), int(probe_ms), int(seq))

    async def _tick(self, client: Redis, scripts: _Scripts) -> None:
        """Claim due probes; ping; resync now and then."""
        clock = self._clock
        next_ping = clock() + self._ping_interval
        next_sync = clock() + self._resync_interval
        while True:
            await asyncio.sleep(TICK)
            now = clock()
            for key, circuit in self._mirror.circuits().items():
                if (
                    circuit.open_until is not None
                    and now >= circuit.open_until
                    and not circuit.probe_held(now)
                ):
                    self._claim(key)
            if now >= next_sync:
                await self._resync(client, scripts, full=False)
                next_sync = clock() + self._resync_interval
                next_ping = clock() + self._ping_interval
            elif now >= next_ping:
                async with asyncio.timeout(self._timeout):
                    await client.ping()
                next_ping = clock() + self._ping_interval

    async def _resync(self, client: Redis, scripts: _Scripts, *, full: bool) -> None:
        """Fold Redis's cooldowns and circuits into the mirror (after a reconnect: replace
        the circuits and load the owner records and sessions too)."""
        keys = self._keys
        before = self._clock()
        async with asyncio.timeout(self._timeout):
            result: list[Any] = await scripts.snapshot(
                keys=[keys.cooldowns, keys.circuits, keys.seq], args=[keys.probe_prefix]
            )
        after = self._clock()
        now_ms, seq, cooldowns, circuits = result
        self._offset = int(now_ms) / 1000 - (before + after) / 2
        for index in range(0, len(cooldowns), 2):
            self._mirror.extend_cooldown(
                str(cooldowns[index]), self._local(int(float(cooldowns[index + 1])))
            )
        seen = set()
        for index in range(0, len(circuits), 4):
            key = str(circuits[index])
            seen.add(key)
            if not self._pending.get(key):
                self._apply_circuit(
                    key,
                    int(circuits[index + 1]),
                    str(circuits[index + 2]),
                    int(circuits[index + 3]),
                    int(seq),
                    force=full,
                )
        for key in list(self._mirror.circuits()):
            if key not in seen and not self._pending.get(key):
                self._apply_circuit(key, 0, "", 0, int(seq), force=full)
        self._mirror.forget_closed()
        if full:
            await self._load_records(client, "own")
            await self._load_records(client, "sess")

    async def _load_records(self, client: Redis, kind: str) -> None:
        records = self._mirror.owners if kind == "own" else self._mirror.sessions
        prefix = self._keys.record(kind, "")
        names: list[str] = []
        async for name in client.scan_iter(match=prefix + "*", count=RECORD_SCAN_BATCH):
            names.append(name)
            if len(names) >= RECORD_SCAN_BATCH:
                await self._load_batch(client, records, prefix, names)
                names = []
        if names:
            await self._load_batch(client, records, prefix, names)

    async def _load_batch(self, client: Redis, records: Any, prefix: str, names: list[str]) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
                pipe.pttl(name)
            async with asyncio.timeout(self._timeout):
                answers = await pipe.execute()
        now = self._clock()
        for index, name in enumerate(names):
            value, ttl = answers[2 * index], answers[2 * index + 1]
            if value is not None and isinstance(ttl, int) and ttl > 0:
                records.put(name[len(prefix) :], str(value), now + ttl / 1000)

    # -- clocks ---------------------------------------------------------------------------

    def _local(self, redis_ms: int) -> float:
        return redis_ms / 1000 - self._offset

    def _ms_left(self, local_deadline: float) -> int:
        return int((local_deadline - self._clock()) * 1000)


async def _close(pubsub: PubSub, client: Redis) -> None:
    """Close both, even when cancelled half-way (the cancellation is passed on after)."""
    cancelled = False
    for close in (pubsub.aclose, client.aclose):
        try:
            await close()
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # noqa: S110 - the connection is gone either way
            pass
    if cancelled:
        raise asyncio.CancelledError


_CIRCUIT_OPS = frozenset({"open", "close", "claim", "extend", "release"})


class _Scripts:
    """The Lua scripts, registered on one client (loaded on first use, by SHA after)."""

    def __init__(self, client: Redis) -> None:
        self.cooldown: AsyncScript = client.register_script(COOLDOWN)
        self.circuit: AsyncScript = client.register_script(CIRCUIT)
        self.record: AsyncScript = client.register_script(RECORD)
        self.snapshot: AsyncScript = client.register_script(SNAPSHOT)
