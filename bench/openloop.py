"""Open-loop load generator: fixed request rate, latency measured from the *scheduled* time.

wrk is closed-loop (a slow response delays the next request, hiding queueing: "coordinated
omission").  Here request ``i`` is due at ``start + i / rate`` whatever happened before; if the
generator or the server falls behind, the wait counts as latency.  ``service`` latency (from
the moment the request was actually sent) and the generator's own lag are reported too.

Prints one JSON object on stdout.

    python bench/openloop.py --url http://127.0.0.1:18081/up/v1/chat/completions \
        --body-file body.json --rate 200 --duration 15 --warmup 2 -H 'authorization: Bearer x'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class Sample:
    latency: float  # completion - scheduled time
    service: float  # completion - actual send time
    lag: float  # actual send time - scheduled time
    status: int  # 0: transport error / timeout
    complete: bool  # body read fully


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def summarize(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    out = {f"p{q:g}".replace(".", ""): percentile(ordered, q) * 1000 for q in (50, 90, 99, 99.9)}
    out["max"] = (ordered[-1] if ordered else float("nan")) * 1000
    out["mean"] = (sum(ordered) / len(ordered) if ordered else float("nan")) * 1000
    return out


class OpenLoop:
    def __init__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        self.url = url
        self.body = body
        self.headers = headers
        self.timeout = timeout

    async def one(self, session: aiohttp.ClientSession, scheduled: float) -> Sample:
        sent = time.perf_counter()
        status = 0
        complete = False
        try:
            async with session.post(self.url, data=self.body, headers=self.headers) as resp:
                await resp.read()
                status = resp.status
                complete = True
        except (aiohttp.ClientError, TimeoutError):
            pass
        end = time.perf_counter()
        return Sample(end - scheduled, end - sent, sent - scheduled, status, complete)

    async def phase(self, session: aiohttp.ClientSession, rate: float, seconds: float) -> Any:
        count = int(rate * seconds)
        start = time.perf_counter() + 0.01
        tasks: list[asyncio.Task[Sample]] = []
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(session, due)))
        samples = await asyncio.gather(*tasks)
        return samples, time.perf_counter() - start

    async def run(self, rate: float, duration: float, warmup: float) -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=120)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            if warmup > 0:
                await self.phase(session, rate, warmup)
            samples, elapsed = await self.phase(session, rate, duration)
        ok = [s for s in samples if s.complete and 200 <= s.status < 300]
        return {
            "target_rate": rate,
            "duration_s": duration,
            "sent": len(samples),
            "ok": len(ok),
            "non_2xx": sum(1 for s in samples if s.complete and not 200 <= s.status < 300),
            "errors": sum(1 for s in samples if not s.complete),
            "achieved_rate": len(ok) / elapsed if elapsed > 0 else 0.0,
            "latency_ms": summarize([s.latency for s in ok]),
            "service_ms": summarize([s.service for s in ok]),
            "send_lag_ms": summarize([s.lag for s in samples]),
        }


def parse_headers(raw: list[str]) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    for item in raw:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True, type=Path)
    parser.add_argument("-H", "--header", action="append", default=[])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request seconds")
    args = parser.parse_args(argv)
    gen = OpenLoop(args.url, args.body_file.read_bytes(), parse_headers(args.header), args.timeout)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(gen.run(args.rate, args.duration, args.warmup))
    else:
        result = uvloop.run(gen.run(args.rate, args.duration, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
