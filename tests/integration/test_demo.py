"""``python main.py --demo`` and ``scripts/run --demo``: one command shows a fallback.

Each demo runs as a subprocess on a free port; the test runs exactly what it prints (the
curl lines through httpx, the SDK lines through this interpreter) and stops it by its PID.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.scriptvenv import ROOT, SCRIPTS, script_env, wrapper_venv

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


def check_the_demo(instructions: str, port: int, *, sdk: bool = True) -> None:
    url = f"http://127.0.0.1:{port}"
    assert url in instructions
    curls = printed(instructions, "curl")
    assert [c[-1] if c[1] == "-s" else c[2] for c in curls] == [
        f"{url}/openai/chat/completions",
        f"{url}/anthropic/v1/messages",
        f"{url}/health",
    ]
    with httpx.Client(timeout=10) as http:
        for family, curl in zip(("openai", "anthropic"), curls[:2], strict=True):
            first = run_curl(http, curl)
            assert first.status_code == 200, first.text
            assert first.headers["x-router-provider"] == "backup", family
            assert first.headers["x-router-attempts"] == "2", family
            assert "Hello from backup" in first.text
            again = run_curl(http, curl)  # primary is cooling down now: straight to backup
            assert again.headers["x-router-provider"] == "backup"
            assert again.headers["x-router-attempts"] == "1"
        health = run_curl(http, curls[2]).json()
    for family in ("openai", "anthropic"):
        states = {row["name"]: row["state"] for row in health["providers"][family]}
        assert states == {"primary": "cooling_down", "backup": "healthy"}
    # The SDK lines, exactly as printed; a deprecated model name would be an error here.
    sdk_lines = printed(instructions, "python")
    assert len(sdk_lines) == 2
    if not sdk:
        return
    for argv in sdk_lines:
        assert argv[1] == "-c"
        result = subprocess.run(
            [sys.executable, "-W", "error::DeprecationWarning", "-c", argv[2]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "Hello from backup"


def test_python_main_demo(tmp_path: Path) -> None:
    port = free_port()
    env = script_env(tmp_path)
    command = [sys.executable, str(ROOT / "main.py"), "--demo", "--port", str(port)]
    with demo(command, cwd=tmp_path, env=env, logs=tmp_path) as instructions:
        check_the_demo(instructions, port)


def test_scripts_run_demo(tmp_path: Path) -> None:
    port = free_port()
    venv = wrapper_venv(tmp_path / "venv")
    command = [str(SCRIPTS / "run"), "--demo", "--port", str(port)]
    with demo(command, cwd=tmp_path, env=script_env(venv), logs=tmp_path) as instructions:
        check_the_demo(instructions, port, sdk=False)  # the same printout: run once above


def test_demo_needs_no_file_and_ignores_router_keys_in_the_environment(tmp_path: Path) -> None:
    """No config file anywhere, LLM_ROUTER_API_KEYS set: the printed lines still work."""
    port = free_port()
    env = script_env(tmp_path, LLM_ROUTER_API_KEYS="would-lock-the-demo")
    command = [sys.executable, str(ROOT / "main.py"), "--demo", "--port", str(port)]
    with demo(command, cwd=tmp_path, env=env, logs=tmp_path) as instructions:
        curl, *_ = printed(instructions, "curl")
        with httpx.Client(timeout=10) as http:
            assert run_curl(http, curl).headers["x-router-provider"] == "backup"
    assert list(tmp_path.glob("*.json")) == []
