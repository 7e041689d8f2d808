"""How fast does one router process learn what another learned?  (SPEC section 11)

Starts a redis-server, the fake upstream and two router processes sharing state through it.
Each trial: instance 1 gets a 429 from the primary key (and falls back); we then poll
instance 2's /health until it shows the primary cooling down, i.e. until it would skip it.
The cooldown is short (retry-after-ms), so trials follow each other once it has run out.

    .venv/bin/python bench/propagation.py [--trials 200] [--cooldown-ms 300]

Everything listens on 127.0.0.1 (free ports); every process started is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fleet_common import (
    BODY,
    free_port,
    percentile,
    process,
    redis_command,
    router_command,
    two_providers,
    wait_ready,
)

from llm_api_router.fake_upstream import FakeUpstreamThread, rate_limited


def state_of(client: httpx.Client, url: str) -> str:
    rows = client.get(url + "/health").json()["providers"]["openai"]
    return str(next(r["state"] for r in rows if r["name"] == "primary"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--cooldown-ms", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llm-router-propagation-"))
    redis_port = free_port()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        stack.enter_context(process(redis_command(redis_port, work), work / "redis.log"))
        fake = stack.enter_context(FakeUpstreamThread())
        (work / "config.json").write_text(json.dumps(two_providers(fake, redis_port)))
        client = stack.enter_context(httpx.Client(timeout=10))
        urls = []
        for index in range(2):
            port = free_port()
            stack.enter_context(
                process(router_command(work / "config.json", port), work / f"router-{index}.log")
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_ready(url + "/health", client)
        one, two = urls
        samples: list[float] = []
        for _ in range(args.trials):
            fake.script("primary", rate_limited(retry_after_ms=args.cooldown_ms))
            answer = client.post(one + "/openai/chat/completions", json=BODY)
            learned = time.perf_counter()
            if answer.headers.get("x-router-provider") != "backup":
                raise SystemExit(f"unexpected answer from instance 1: {answer.status_code}")
            while state_of(client, two) != "cooling_down":
                if time.perf_counter() - learned > 5:
                    raise SystemExit("instance 2 never learned of the 429")
            samples.append(time.perf_counter() - learned)
            while state_of(client, one) != "healthy" or state_of(client, two) != "healthy":
                time.sleep(0.01)
        poll = []
        for _ in range(50):
            started = time.perf_counter()
            state_of(client, two)
            poll.append(time.perf_counter() - started)
    ms = [s * 1000 for s in samples]
    print(f"propagation over {len(ms)} trials (instance 1's 429 -> instance 2 skips the key)")
    print(f"  p50 {percentile(ms, 0.5):.2f} ms   p99 {percentile(ms, 0.99):.2f} ms")
    print(f"  min {min(ms):.2f} ms   max {max(ms):.2f} ms   mean {statistics.mean(ms):.2f} ms")
    print(f"  (one /health poll of instance 2 takes {statistics.median(poll) * 1000:.2f} ms)")
    print(f"  goal p99 < 100 ms: {'met' if percentile(ms, 0.99) < 100 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    os.environ.pop("LLM_ROUTER_REDIS_URL", None)
    sys.exit(main())
