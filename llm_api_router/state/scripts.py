"""What goes over the wire to Redis: key names, Lua scripts, and the events they publish.

Every change is one Lua script, so it is atomic and publishes its event in the same step:
subscribers see changes in the order Redis applied them.  Deadlines are computed in the
script from Redis's own clock (``TIME``, milliseconds since the epoch), so every process
shares one clock; each converts them to its monotonic clock with an offset it measures.

Only names, accounts and times are written: provider scopes, account names, hashed object
ids and session keys, deadlines.  Never a key, a prompt or an id as the client sent it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "CIRCUIT",
    "COOLDOWN",
    "RECORD",
    "SNAPSHOT",
    "Event",
    "Keys",
    "hashed",
    "parse_event",
]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: cooldowns zset.  ARGV: channel, origin, scope, duration ms.  -> {now, deadline}
COOLDOWN = _NOW + """
local untilms = now + tonumber(ARGV[4])
local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[3]) or '0')
if cur >= untilms then return {now, cur} end
redis.call('ZADD', KEYS[1], untilms, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PUBLISH', ARGV[1], cjson.encode({k='cd', o=ARGV[2], s=ARGV[3], t=untilms}))
return {now, untilms}
"""

#: KEYS: circuits hash, probe key, sequence key.
#: ARGV: channel, origin, provider, op (open/close/claim/extend/release), token, ms.
#: -> {now, seq, open_until ms (0: closed), probe owner ('' if none), probe deadline ms}
CIRCUIT = _NOW + """
local op, token, ms = ARGV[4], ARGV[5], tonumber(ARGV[6])
local changed = false
if op == 'open' then
  local untilms = now + ms
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or '0')
  if cur < untilms then redis.call('HSET', KEYS[1], ARGV[3], untilms) end
  if redis.call('GET', KEYS[2]) == token then redis.call('DEL', KEYS[2]) end
  changed = true
elseif op == 'close' then
  changed = redis.call('HDEL', KEYS[1], ARGV[3]) + redis.call('DEL', KEYS[2]) > 0
elseif op == 'claim' then
  local o = tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or '0')
  if o > 0 and o <= now then
    changed = redis.call('SET', KEYS[2], token, 'NX', 'PX', ms) ~= false
  end
elseif redis.call('GET', KEYS[2]) == token then
  if op == 'extend' then redis.call('PEXPIRE', KEYS[2], ms) else redis.call('DEL', KEYS[2]) end
  changed = true
end
local o = tonumber(redis.call('HGET', KEYS[1], ARGV[3]) or '0')
local p = redis.call('GET', KEYS[2])
local pu = 0
if p then pu = now + redis.call('PTTL', KEYS[2]) else p = '' end
local seq
if changed then
  seq = redis.call('INCR', KEYS[3])
  redis.call('PUBLISH', ARGV[1],
    cjson.encode({k='cb', o=ARGV[2], s=ARGV[3], q=seq, t=o, p=p, u=pu}))
else
  seq = tonumber(redis.call('GET', KEYS[3]) or '0')
end
return {now, seq, o, p, pu}
"""

#: KEYS: the record's key.  ARGV: channel, origin, kind (own/sess), hashed id, value, ttl ms.
RECORD = """
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[6])
redis.call('PUBLISH', ARGV[1],
  cjson.encode({k=ARGV[3], o=ARGV[2], s=ARGV[4], v=ARGV[5], u=tonumber(ARGV[6])}))
return 1
"""

#: KEYS: cooldowns zset, circuits hash, sequence key.  ARGV: probe key prefix.
#: -> {now, seq, {scope, deadline, ...}, {provider, open_until, probe owner, probe deadline, ...}}
SNAPSHOT = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cds = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local cbs = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #cbs, 2 do
  local pk = ARGV[1] .. cbs[i]
  local p = redis.call('GET', pk)
  local pu = 0
  if p then pu = now + redis.call('PTTL', pk) else p = '' end
  table.insert(out, cbs[i])
  table.insert(out, cbs[i + 1])
  table.insert(out, p)
  table.insert(out, pu)
end
return {now, tonumber(redis.call('GET', KEYS[3]) or '0'), cds, out}
"""


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key and channel the router uses, under one prefix."""

    prefix: str

    @property
    def channel(self) -> str:
        return self.prefix + "events"

    @property
    def cooldowns(self) -> str:
        return self.prefix + "cooldowns"

    @property
    def circuits(self) -> str:
        return self.prefix + "circuits"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def probe_prefix(self) -> str:
        return self.prefix + "probe:"

    def probe(self, provider: str) -> str:
        return self.probe_prefix + provider

    def record(self, kind: str, hashed_id: str) -> str:
        return f"{self.prefix}{kind}:{hashed_id}"


def hashed(value: str) -> str:
    """What stands for an object id or a session key in Redis: a 128-bit digest."""
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    """One published change.  Times are Redis milliseconds; ``ttl`` is for records."""

    kind: str
    origin: str
    subject: str
    deadline: int = 0
    seq: int = 0
    probe_owner: str = ""
    probe_until: int = 0
    value: str = ""
    ttl: int = 0


def parse_event(data: bytes | str) -> Event | None:
    """The event in a pub/sub message, or None when it is not one of ours."""
    try:
        raw: Any = orjson.loads(data)
        return Event(
            kind=str(raw["k"]),
            origin=str(raw["o"]),
            subject=str(raw["s"]),
            deadline=int(raw.get("t", 0)),
            seq=int(raw.get("q", 0)),
            probe_owner=str(raw.get("p", "")),
            probe_until=int(raw.get("u", 0)) if raw["k"] == "cb" else 0,
            value=str(raw.get("v", "")),
            ttl=int(raw.get("u", 0)) if raw["k"] != "cb" else 0,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
