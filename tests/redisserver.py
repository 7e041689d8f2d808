"""A real ``redis-server`` for the tests, on a free loopback port, stopped by PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

MISSING = (
    "redis-server is not installed: the shared-state tests need a real Redis. "
    "Install it (Debian: apt-get install -y redis-server; .ci/run does this) and re-run."
)


class RedisServer:
    """``redis-server`` without persistence; :meth:`stop` and :meth:`start` keep the port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(MISSING, pytrace=False)
        self._binary = binary
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"redis-server exited ({self._process.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("redis-server did not start in time")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait(10)


def dump_all(client: redis.Redis, match: str = "*") -> str:
    """Every key matching ``match`` with its value, whatever its type, as one text."""
    lines = []
    for name in client.scan_iter(match=match):
        kind = client.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            value: object = client.get(name)
        elif kind == "hash":
            value = client.hgetall(name)
        elif kind == "zset":
            value = client.zrange(name, 0, -1, withscores=True)
        elif kind == "set":
            value = client.smembers(name)
        elif kind == "list":
            value = client.lrange(name, 0, -1)
        else:
            value = kind
        lines.append(f"{name!r} {kind} {value!r}")
    return "\n".join(lines)
