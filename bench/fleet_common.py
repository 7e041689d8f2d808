"""Helpers shared by the shared-state benchmarks (``propagation.py``, ``fleet.py``).

Processes are started with :func:`process` and stopped by PID when its block ends; every
address is on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` (output to ``log``) for the block; stop it by PID afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 10 s (idempotent)."""
    if proc.poll() is not None:
        return
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


def wait_port(port: int, timeout: float = 10) -> None:
    """Until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.02)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def redis_command(port: int, work: Path) -> list[str]:
    """A throwaway redis-server on 127.0.0.1:``port``, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    return [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--dir", str(work)),
    ]


def router_command(config: Path, port: int, cpu: int | None = None) -> list[str]:
    """One router process (``main.py``) on 127.0.0.1:``port``, pinned to ``cpu`` if given."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    return [
        *pin,
        sys.executable,
        "main.py",
        "--config",
        str(config),
        *("--port", str(port), "--log-level", "warning"),
    ]


def two_providers(fake: Any, redis_port: int | None) -> dict[str, Any]:
    """OpenAI ``primary`` (priority 1) and ``backup`` (priority 2) on the fake upstream, state
    in the Redis on ``redis_port`` (or in the process when ``None``)."""
    config: dict[str, Any] = {
        "openai": [
            {
                "name": name,
                "api_key": f"sk-bench-{name}",
                "base_url": fake.base_url(name, "openai"),
                "priority": priority,
                "max_retries": 0,
            }
            for name, priority in (("primary", 1), ("backup", 2))
        ]
    }
    if redis_port is not None:
        config["state"] = {"redis_url": f"redis://127.0.0.1:{redis_port}/0"}
    return config
