"""Start ``--demo`` as a subprocess and run what it prints (for the demo and README tests)."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def demo(command: list[str], cwd: Path, env: dict[str, str], logs: Path) -> Iterator[str]:
    """Start ``command``; yield what it printed once the instructions are complete."""
    out_path, err_path = logs / "demo-stdout.txt", logs / "demo-stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "/health" not in out_path.read_text() or "python -c" not in out_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no instructions: {out_path.read_text()} {err_path.read_text()}")
            time.sleep(0.05)
        time.sleep(0.2)  # the last lines of the same print
        yield out_path.read_text()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)


def printed(instructions: str, program: str) -> list[list[str]]:
    """The printed command lines that start with ``program``, split as a shell would."""
    return [
        shlex.split(line)
        for line in instructions.splitlines()
        if line.strip().startswith(program + " ")
    ]


def run_curl(http: httpx.Client, argv: list[str]) -> httpx.Response:
    """What ``curl -si URL [-H 'k: v'] [-d BODY]`` does, through httpx."""
    assert argv[0] == "curl"
    url, headers, body = "", {}, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            body = next(args)
        elif not arg.startswith("-"):
            url = arg
    if body is None:
        return http.get(url, headers=headers)
    return http.post(url, headers=headers, content=body)
