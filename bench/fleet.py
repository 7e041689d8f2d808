"""Several router processes on one Redis: what the fleet pays, and what Redis costs  (issue 13).

Three measurements in one run, all against the fake upstream on 127.0.0.1:

1. discovery: ``primary`` always answers 429 (``retry-after: COOLDOWN``), ``backup`` 200; a
   closed-loop load split across two router instances, once sharing state through Redis and
   once without it.  Upstream hits (primary + backup) per client request, and primary hits per
   cooldown period (the fleet should pay one discovery per cooldown, each lone instance one).
2. outage: the same two Redis instances under load; redis-server is killed (SIGKILL, by PID)
   mid-run and started again on the same port OUTAGE seconds later.  Failed requests, latency
   before / during / after, and what ``/health`` said (``shared_state``) on both instances.
3. hot path: one router with Redis configured and two without (healthy provider; the second
   one measures the noise), pinned to CPU 0, this process on the other CPUs; chat
   non-streaming and streaming, the same load on each in rotating rounds: req/s and p50/p99,
   Redis / no Redis.

    .venv/bin/python bench/fleet.py [--duration 20] [--cooldown 2] [--outage 10]
                                    [--rounds 4] [--round-seconds 4] [--no-pin]
                                    [--report bench/FLEET.md]

The load generator (aiohttp) and the fake upstream share this process; their CPU use is
reported next to the routers'.  Every process started is stopped by PID; nothing listens
beyond 127.0.0.1.  Needs ``redis-server`` (``apt-get install -y redis-server``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from fleet_common import (
    BODY,
    ROOT,
    free_port,
    percentile,
    process,
    redis_command,
    router_command,
    stop,
    two_providers,
    wait_port,
    wait_ready,
)

from llm_api_router.fake_upstream import FakeUpstreamThread, Ok, rate_limited

CHAT = "/openai/chat/completions"
TICKS = os.sysconf("SC_CLK_TCK")


# -- load --------------------------------------------------------------------------------------


@dataclass
class Sample:
    started: float  # time.monotonic()
    latency: float  # seconds
    ok: bool
    provider: str


@dataclass
class Load:
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    began: float = 0.0
    ended: float = 0.0

    def failed(self, samples: list[Sample] | None = None) -> int:
        return sum(not s.ok for s in (self.samples if samples is None else samples))

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.started < end]


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, stream: bool, load: Load
) -> None:
    started = time.monotonic()
    ok, provider = False, ""
    try:
        async with session.post(
            url, data=body, headers={"content-type": "application/json"}
        ) as answer:
            data = await answer.read()
            provider = answer.headers.get("x-router-provider", "")
            ok = answer.status == 200 and (b"[DONE]" in data if stream else b'"choices"' in data)
            if not ok:
                key = f"{answer.status} {data[:120]!r}"
                load.errors[key] = load.errors.get(key, 0) + 1
    except (TimeoutError, aiohttp.ClientError) as exc:
        key = type(exc).__name__
        load.errors[key] = load.errors.get(key, 0) + 1
    load.samples.append(Sample(started, time.monotonic() - started, ok, provider))


async def closed_loop(
    urls: list[str],
    *,
    concurrency: int,
    seconds: float,
    max_requests: int,
    stream: bool = False,
    during: Callable[[], Any] | None = None,
) -> Load:
    """``concurrency`` workers, worker i always on ``urls[i % len(urls)]``, each sending its
    next request when the last one is answered, until ``seconds`` or ``max_requests``.
    ``during`` (a coroutine function) runs alongside and is awaited at the end."""
    body = json.dumps({**BODY, "stream": stream}).encode()
    load = Load()
    sent = 0
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        load.began = time.monotonic()
        end = load.began + seconds

        async def worker(index: int) -> None:
            nonlocal sent
            url = urls[index % len(urls)] + CHAT
            while time.monotonic() < end and sent < max_requests:
                sent += 1
                await _one(session, url, body, stream, load)

        side = asyncio.ensure_future(during()) if during is not None else None
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        load.ended = time.monotonic()
        if side is not None:
            await side
    return load


# -- CPU use ----------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of ``pid``, or of this process when ``None``."""
    if pid is None:
        return time.process_time()
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    return 0.0


@contextlib.contextmanager
def cpu_share(pids: dict[str, int | None], out: dict[str, float]) -> Iterator[None]:
    """Fill ``out`` with each process's CPU use in % of one core over the block."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    yield
    wall = time.monotonic() - started
    for name, pid in pids.items():
        out[name] = 100 * (cpu_seconds(pid) - before[name]) / wall


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    url: str
    proc: subprocess.Popen[bytes]


@dataclass
class Fleet:
    """What the run needs to start and stop processes."""

    work: Path
    stack: contextlib.ExitStack
    client: httpx.Client
    fake: FakeUpstreamThread
    redis_port: int
    redis: subprocess.Popen[bytes] | None = None
    logs: int = 0

    def start_redis(self) -> subprocess.Popen[bytes]:
        self.redis = self.stack.enter_context(
            process(redis_command(self.redis_port, self.work), self.work / "redis.log")
        )
        wait_port(self.redis_port)
        return self.redis

    def routers(self, config: dict[str, Any], count: int, cpu: int | None = None) -> list[Node]:
        """Start ``count`` routers on ``config`` (pinned to ``cpu`` if given), wait until they
        answer."""
        self.logs += 1
        path = self.work / f"config-{self.logs}.json"
        path.write_text(json.dumps(config))
        started = []
        for index in range(count):
            port = free_port()
            proc = self.stack.enter_context(
                process(
                    router_command(path, port, cpu), self.work / f"router-{self.logs}-{index}.log"
                )
            )
            started.append(Node(f"http://127.0.0.1:{port}", proc))
        for node in started:
            wait_ready(node.url + "/health", self.client)
        return started

    def hits(self) -> dict[str, int]:
        return {name: len(self.fake.requests(name)) for name in ("primary", "backup")}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def latency(samples: list[Sample]) -> tuple[float, float, float]:
    values = [s.latency for s in samples] or [0.0]
    return percentile(values, 0.5), percentile(values, 0.99), max(values)


def bursts(times: list[float], gap: float) -> list[int]:
    """Sizes of the groups of ``times`` (sorted) separated by more than ``gap`` seconds."""
    sizes: list[int] = []
    last = None
    for at in times:
        if last is None or at - last > gap:
            sizes.append(0)
        sizes[-1] += 1
        last = at
    return sizes


def discovery(
    fleet: Fleet, args: argparse.Namespace, nodes: list[Node], concurrency: int
) -> dict[str, Any]:
    """Primary always 429: load across ``nodes``; upstream hits per request."""
    before = fleet.hits()
    cpu: dict[str, float] = {}
    pids: dict[str, int | None] = {"bench": None}
    pids.update({f"router{i}": node.proc.pid for i, node in enumerate(nodes)})
    with cpu_share(pids, cpu):
        load = asyncio.run(
            closed_loop(
                [node.url for node in nodes],
                concurrency=concurrency,
                seconds=args.duration,
                max_requests=args.max_requests,
            )
        )
    after = fleet.hits()
    primary = after["primary"] - before["primary"]
    backup = after["backup"] - before["backup"]
    elapsed = load.ended - load.began
    periods = elapsed / args.cooldown
    discoveries = bursts(
        sorted(
            r.received_at
            for r in fleet.fake.requests("primary")
            if load.began <= r.received_at <= load.ended
        ),
        min(0.5, args.cooldown / 2),
    )
    return {
        "concurrency": concurrency,
        "discoveries": len(discoveries),
        "largest_discovery": max(discoveries, default=0),
        "requests": len(load.samples),
        "failed": load.failed(),
        "errors": load.errors,
        "seconds": elapsed,
        "primary_hits": primary,
        "backup_hits": backup,
        "hits_per_request": (primary + backup) / max(1, len(load.samples)),
        "cooldown_periods": periods,
        "primary_per_period": primary / periods,
        "p50": latency(load.samples)[0],
        "p99": latency(load.samples)[1],
        "cpu": cpu,
    }


def outage(fleet: Fleet, args: argparse.Namespace, nodes: list[Node]) -> dict[str, Any]:
    """Kill redis-server mid-load on ``nodes`` (sharing state through it), start it again."""
    urls = [node.url for node in nodes]
    marks: dict[str, float] = {}
    hits: dict[str, dict[str, int]] = {}
    health: list[tuple[float, int, str]] = []

    async def poll(session: aiohttp.ClientSession, until: float) -> None:
        while time.monotonic() < until:
            for index, url in enumerate(urls):
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, KeyError):
                    async with session.get(url + "/health") as answer:
                        state = (await answer.json())["shared_state"]
                        health.append((time.monotonic(), index, str(state)))
            await asyncio.sleep(0.1)

    async def script() -> None:
        total = args.before + args.outage + args.after
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            poller = asyncio.ensure_future(poll(session, time.monotonic() + total + 1))
            await asyncio.sleep(args.before)
            assert fleet.redis is not None
            hits["before"] = fleet.hits()
            marks["kill"] = time.monotonic()
            fleet.redis.kill()  # SIGKILL by PID: no goodbye to the clients
            fleet.redis.wait(5)
            await asyncio.sleep(args.outage)
            hits["kill"] = fleet.hits()
            marks["restart"] = time.monotonic()
            fleet.start_redis()
            marks["back"] = time.monotonic()
            await asyncio.sleep(args.after)
            hits["end"] = fleet.hits()
            await poller

    start_hits = fleet.hits()
    load = asyncio.run(
        closed_loop(
            urls,
            concurrency=args.concurrency,
            seconds=args.before + args.outage + args.after,
            max_requests=10**9,
            during=script,
        )
    )
    warm = load.began + 1.0  # the first second (new connections) is not "before"
    phases = {
        "before": load.between(warm, marks["kill"]),
        "during": load.between(marks["kill"], marks["restart"]),
        "after": load.between(marks["restart"], load.ended + 1),
    }
    rows: dict[str, dict[str, float]] = {}
    for name, samples in phases.items():
        p50, p99, worst = latency(samples)
        rows[name] = {"requests": len(samples), "failed": load.failed(samples)}
        rows[name].update({"p50": p50, "p99": p99, "max": worst})
    seen: dict[str, dict[int, list[str]]] = {"before": {}, "during": {}, "after": {}}
    for at, index, state in health:
        phase = "before" if at < marks["kill"] else "during" if at < marks["restart"] else "after"
        states = seen[phase].setdefault(index, [])
        if not states or states[-1] != state:
            states.append(state)

    def first(state: str, since: float, index: int) -> float | None:
        times = [at - since for at, i, s in health if i == index and s == state and at >= since]
        return min(times, default=None)

    degraded_after = [first("degraded", marks["kill"], i) for i in range(len(urls))]
    ok_after = [first("ok", marks["restart"], i) for i in range(len(urls))]
    primary = {
        "before": hits["before"]["primary"] - start_hits["primary"],
        "during": hits["kill"]["primary"] - hits["before"]["primary"],
        "after": hits["end"]["primary"] - hits["kill"]["primary"],
    }
    return {
        "requests": len(load.samples),
        "failed": load.failed(),
        "errors": load.errors,
        "phases": rows,
        "health": seen,
        "degraded_after": degraded_after,
        "ok_after": ok_after,
        "redis_restart_seconds": marks["back"] - marks["restart"],
        "primary_hits": primary,
    }


def hot_path(fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    fleet.fake.set_default("primary", Ok())
    config = two_providers(fleet.fake, fleet.redis_port)
    config["state"]["key_prefix"] = "llm-router-bench-hot:"
    pin = 0 if args.pin else None
    targets = {
        "redis": fleet.routers(config, 1, pin)[0],
        "no redis": fleet.routers(two_providers(fleet.fake, None), 1, pin)[0],
        "no redis B": fleet.routers(two_providers(fleet.fake, None), 1, pin)[0],
    }
    redis = fleet.redis.pid if fleet.redis is not None else None
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for stream in (False, True):
        mode = "stream" if stream else "chat"
        rows[mode] = {name: [] for name in targets}
        for round_ in range(args.rounds):
            order = list(targets)[round_ % 3 :] + list(targets)[: round_ % 3]
            for name in order:
                url = targets[name].url
                asyncio.run(  # warm-up, discarded
                    closed_loop(
                        [url],
                        concurrency=args.concurrency,
                        seconds=args.warmup,
                        max_requests=10**9,
                        stream=stream,
                    )
                )
                cpu: dict[str, float] = {}
                pids = {"router": targets[name].proc.pid, "bench": None, "redis": redis}
                with cpu_share(pids, cpu):
                    load = asyncio.run(
                        closed_loop(
                            [url],
                            concurrency=args.concurrency,
                            seconds=args.round_seconds,
                            max_requests=10**9,
                            stream=stream,
                        )
                    )
                p50, p99, _ = latency(load.samples)
                rows[mode][name].append(
                    {
                        "rps": len(load.samples) / (load.ended - load.began),
                        "p50": p50,
                        "p99": p99,
                        "failed": load.failed(),
                        "cpu": cpu,
                    }
                )
    for node in targets.values():
        stop(node.proc)
    return rows


# -- report -----------------------------------------------------------------------------------


def uptime() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_text(cpu: dict[str, float]) -> str:
    return " / ".join(f"{name} {value:.0f}" for name, value in cpu.items())


def discovery_rows(rows: dict[str, dict[str, Any]], cooldown: float) -> list[str]:
    lines = [
        f"Primary always 429 with `retry-after: {cooldown:g}` (cooldown {cooldown:g} s), backup"
        " 200; the load split evenly across two router instances.",
        "",
        "| state | connections | requests | failed | seconds | primary hits | backup hits |"
        " upstream hits / request | cooldown periods | discoveries (largest) |"
        " primary hits / period | p50 ms | p99 ms | CPU % of a core |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name.split(',')[0]} | {r['concurrency']} | {r['requests']} | {r['failed']}"
            f" | {r['seconds']:.1f} | {r['primary_hits']} | {r['backup_hits']}"
            f" | **{r['hits_per_request']:.4f}** | {r['cooldown_periods']:.1f}"
            f" | {r['discoveries']} ({r['largest_discovery']})"
            f" | **{r['primary_per_period']:.2f}** | {ms(r['p50'])} | {ms(r['p99'])}"
            f" | {cpu_text(r['cpu'])} |"
        )
    lines.append("")
    for concurrency in sorted({r["concurrency"] for r in rows.values()}):
        shared, alone = rows[f"Redis, {concurrency}"], rows[f"no Redis, {concurrency}"]
        lines.append(
            f"- {concurrency} connections: primary hits Redis / no Redis"
            f" {shared['primary_hits']} / {alone['primary_hits']}"
            f" = {shared['primary_hits'] / max(1, alone['primary_hits']):.2f}; goal upstream"
            f" hits / request ≤ 1.01 {'met' if shared['hits_per_request'] <= 1.01 else 'NOT met'}"
            f" ({shared['hits_per_request']:.4f})."
        )
    lines += [
        "",
        "A discovery is a burst of primary hits (separated by more than"
        f" {min(0.5, cooldown / 2):g} s); its size is how many requests reached the primary"
        " before the first 429 was known (requests already in flight when a cooldown ran out).",
    ]
    return lines


def outage_rows(out: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [
        f"The two Redis instances above, {args.concurrency} connections; redis-server killed"
        f" (SIGKILL) after {args.before:g} s, started again on the same port {args.outage:g} s"
        f" later, {args.after:g} s more load. Primary still always 429.",
        "",
        "| phase | requests | failed | p50 ms | p99 ms | max ms | primary hits |"
        " /health shared_state (instance 0; instance 1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["phases"].items():
        states = "; ".join(" → ".join(out["health"][name].get(i, ["?"])) for i in range(2))
        lines.append(
            f"| {name} | {r['requests']} | {r['failed']} | {ms(r['p50'])} | {ms(r['p99'])}"
            f" | {ms(r['max'])} | {out['primary_hits'][name]} | {states} |"
        )
    before, during = out["phases"]["before"], out["phases"]["during"]

    def secs(values: list[float | None]) -> str:
        return " / ".join("never" if v is None else f"{v:.2f} s" for v in values)

    lines += [
        "",
        f"Failed requests in the whole run: **{out['failed']}** of {out['requests']}"
        + (f" ({out['errors']})" if out["errors"] else "")
        + f". During / before: p50 {during['p50'] / before['p50']:.2f}x,"
        f" p99 {during['p99'] / before['p99']:.2f}x."
        f" `/health` said `degraded` {secs(out['degraded_after'])} after the kill and `ok`"
        f" {secs(out['ok_after'])} after the restart (polled every 0.1 s; instance 0 / 1).",
    ]
    return lines


def hot_rows(
    hot: dict[str, dict[str, list[dict[str, Any]]]], args: argparse.Namespace
) -> list[str]:
    lines = [
        f"One router with Redis configured and two without (`no redis B`, an identical second"
        f" process: the noise floor of the comparison), one healthy provider on the fake"
        f" upstream, {'all three pinned to CPU 0, ' if args.pin else ''}"
        f"{args.concurrency} connections, {args.rounds} rotating rounds of"
        f" {args.round_seconds:g} s each (after {args.warmup:g} s warm-up); median of the rounds,"
        " the rounds' req/s in brackets. ⚠: the rounds' req/s spread more than 10 %.",
        "",
        "| mode | router | req/s | p50 ms | p99 ms | failed | CPU % of a core (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for mode, targets in hot.items():
        med: dict[str, dict[str, float]] = {}
        for name, rounds in targets.items():
            med[name] = {
                key: statistics.median(r[key] for r in rounds) for key in ("rps", "p50", "p99")
            }
            rps = [r["rps"] for r in rounds]
            noisy = " ⚠" if max(rps) > 1.1 * min(rps) else ""
            cpu = {k: statistics.median(r["cpu"][k] for r in rounds) for k in rounds[0]["cpu"]}
            lines.append(
                f"| {mode} | {name} | {med[name]['rps']:.0f}"
                f" ({', '.join(f'{v:.0f}' for v in rps)}){noisy}"
                f" | {ms(med[name]['p50'])} | {ms(med[name]['p99'])}"
                f" | {sum(r['failed'] for r in rounds)} | {cpu_text(cpu)} |"
            )
        b = med["no redis"]
        for name, label in (("redis", "Redis / no Redis"), ("no redis B", "noise: B / no Redis")):
            a = med[name]
            ratios.append(
                f"| {mode} | {label} | **{a['rps'] / b['rps']:.3f}** | {a['p50'] / b['p50']:.3f}"
                f" | {a['p99'] / b['p99']:.3f} |"
            )
    lines += [
        "",
        "| mode | ratio | req/s | p50 | p99 |",
        "|---|---|---|---|---|",
        *ratios,
    ]
    return lines


def redis_version() -> str:
    words = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()
    return " ".join(words[:3])


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Fleet: router instances sharing state through Redis",
        "",
        "Written by `bench/fleet.py` (see bench/README.md); issue 13's measurements besides"
        " propagation (`bench/propagation.py`). Ratios within this run only: the machine is"
        " shared, absolute numbers move between runs.",
        "",
        f"- command: `{results['command']}`",
        f"- date: {results['date']}, commit {commit}, {os.cpu_count()} CPUs," f" {redis_version()}",
        f"- `uptime` at start: `{results['uptime_start']}`",
        f"- `uptime` at end: `{results['uptime_end']}`",
        "- CPU % columns: share of one core over the measured part; `bench` is this process,"
        " the load generator and the fake upstream together.",
        "",
    ]
    if "discovery" in results:
        lines += ["", "## 1. Discovery: primary always 429, two instances", ""]
        lines += discovery_rows(results["discovery"], args.cooldown)
        lines += ["", "## 2. Redis stopped under load", ""]
        lines += outage_rows(results["outage"], args)
    if "hot_path" in results:
        lines += ["", "## 3. Hot-path cost of Redis", ""]
        lines += hot_rows(results["hot_path"], args)
    return "\n".join([*lines, ""])


def fleet_steps(fleet: Fleet, args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """Steps 1 and 2: discovery with Redis, the outage on the same two instances, discovery
    without Redis."""
    counts = [int(c) for c in args.discovery_connections.split(",")]
    rows: dict[str, dict[str, Any]] = {}
    print("1. discovery with Redis ...", flush=True)
    nodes = fleet.routers(config, 2)
    for concurrency in counts:
        time.sleep(args.cooldown)  # the last row's cooldown runs out
        rows[f"Redis, {concurrency}"] = discovery(fleet, args, nodes, concurrency)
    print("2. Redis stopped under load ...", flush=True)
    outage_row = outage(fleet, args, nodes)
    for node in nodes:
        stop(node.proc)
    print("1. discovery without Redis ...", flush=True)
    nodes = fleet.routers(two_providers(fleet.fake, None), 2)
    for concurrency in counts:
        time.sleep(args.cooldown)
        rows[f"no Redis, {concurrency}"] = discovery(fleet, args, nodes, concurrency)
    for node in nodes:
        stop(node.proc)
    return {"discovery": rows, "outage": outage_row}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16, help="connections (all steps)")
    parser.add_argument("--duration", type=float, default=20, help="discovery: seconds per row")
    parser.add_argument(
        "--discovery-connections",
        default="2,16",
        help="discovery: one row per connection count (comma-separated), split across both",
    )
    parser.add_argument("--max-requests", type=int, default=6000, help="discovery: per row")
    parser.add_argument("--cooldown", type=float, default=2, help="discovery: retry-after (s)")
    parser.add_argument("--before", type=float, default=8, help="outage: load before the kill")
    parser.add_argument("--outage", type=float, default=10, help="outage: seconds without Redis")
    parser.add_argument("--after", type=float, default=8, help="outage: load after the restart")
    parser.add_argument("--rounds", type=int, default=4, help="hot path: rounds per router")
    parser.add_argument("--round-seconds", type=float, default=4, help="hot path: per round")
    parser.add_argument("--warmup", type=float, default=1, help="hot path: before each round")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="hot path: do not pin the routers to CPU 0 (and this process to the others)",
    )
    parser.add_argument(
        "--steps",
        default="fleet,hot",
        help="fleet (1 and 2: discovery, outage), hot (3: hot path); to repeat a noisy step",
    )
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "FLEET.md")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "command": shlex.join(["python", "bench/fleet.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "uptime_start": uptime(),
    }
    work = Path(tempfile.mkdtemp(prefix="llm-router-fleet-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        fake = stack.enter_context(FakeUpstreamThread())
        client = stack.enter_context(httpx.Client(timeout=10))
        fleet = Fleet(work, stack, client, fake, free_port())
        fleet.start_redis()
        fake.set_default("primary", rate_limited(retry_after=args.cooldown))
        config = two_providers(fake, fleet.redis_port)
        config["state"]["key_prefix"] = "llm-router-bench-fleet:"
        if "fleet" in args.steps:
            results.update(fleet_steps(fleet, args, config))
        if "hot" in args.steps:
            print("3. hot path ...", flush=True)
            if args.pin and (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
                others = set(range(1, os.cpu_count() or 2))
                for task in Path("/proc/self/task").iterdir():  # every thread: the fake's too
                    os.sched_setaffinity(int(task.name), others)
            else:
                args.pin = False
            results["hot_path"] = hot_path(fleet, args)
    results["uptime_end"] = uptime()
    report = render(results, args)
    print(report)
    args.report.write_text(report)
    raw = ROOT / "bench" / "results" / f"fleet-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1))
    print(f"report: {args.report}  raw: {raw}")
    return 0


if __name__ == "__main__":
    os.environ.pop("LLM_ROUTER_REDIS_URL", None)
    sys.exit(main())
