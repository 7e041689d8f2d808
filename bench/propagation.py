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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from llm_api_router.fake_upstream import FakeUpstreamThread, rate_limited

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_ready(url: str, client: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if client.get(url).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer in time")


def state_of(client: httpx.Client, url: str) -> str:
    rows = client.get(url + "/health").json()["providers"]["openai"]
    return str(next(r["state"] for r in rows if r["name"] == "primary"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--cooldown-ms", type=int, default=300)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    work = Path(tempfile.mkdtemp(prefix="llm-router-propagation-"))
    redis_port = free_port()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        stack.enter_context(
            process(
                [
                    binary,
                    *("--port", str(redis_port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(work)),
                ],
                work / "redis.log",
            )
        )
        fake = stack.enter_context(FakeUpstreamThread())
        config = {
            "openai": [
                {
                    "name": name,
                    "api_key": f"sk-bench-{name}",
                    "base_url": fake.base_url(name, "openai"),
                    "priority": priority,
                    "max_retries": 0,
                }
                for name, priority in (("primary", 1), ("backup", 2))
            ],
            "state": {"redis_url": f"redis://127.0.0.1:{redis_port}/0"},
        }
        (work / "config.json").write_text(json.dumps(config))
        client = stack.enter_context(httpx.Client(timeout=10))
        urls = []
        for index in range(2):
            port = free_port()
            stack.enter_context(
                process(
                    [
                        sys.executable,
                        "main.py",
                        "--config",
                        str(work / "config.json"),
                        *("--port", str(port), "--log-level", "warning"),
                    ],
                    work / f"router-{index}.log",
                )
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
