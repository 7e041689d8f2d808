"""The router's own log output, in a real server process: no forged lines, no stalls."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from llm_api_router.fake_upstream import FakeUpstreamThread
from tests.routerprocess import ROOT, router_process, wait_until

Provider = Callable[..., dict[str, Any]]
MESSAGES = [{"role": "user", "content": "hi"}]
FORGED = "2026-01-01 00:00:00,000 INFO llm_api_router.access: FORGED"


def router_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LLM_ROUTER_API_KEYS", None)
    env.pop("LLM_ROUTER_CONFIG", None)
    return env


def test_text_log_lines_cannot_be_forged_or_blown_up(
    fake: FakeUpstreamThread, provider: Provider, http: httpx.Client, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"openai": [provider("a")]}))
    args = ["--config", str(config), "--log-format", "text"]
    evil = f"gpt\r\n{FORGED}\x1b[2J\u2028{FORGED}"
    huge = "m" * 1_000_000
    with router_process(args, router_env(), tmp_path, http, {"a"}) as (url, _, err_path):
        for model in (evil, huge, "last-model"):
            response = http.post(
                url + "/openai/chat/completions", json={"model": model, "messages": MESSAGES}
            )
            assert response.status_code == 200
        wait_until(lambda: "last-model" in err_path.read_text())
    text = err_path.read_text()
    lines = text.splitlines()
    assert not any(line.startswith(FORGED[:10]) for line in lines), text[-2000:]
    assert "\x1b" not in text and "\u2028" not in text
    assert max(len(line) for line in lines) < 20_000
    evil_lines = [line for line in lines if "FORGED" in line]
    assert evil_lines and all("llm_api_router.access" in line for line in evil_lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_blocked_stderr_does_not_stall_requests(
    fake: FakeUpstreamThread, provider: Provider, tmp_path: Path
) -> None:
    """stderr is a pipe nobody reads: once it is full, /health and chat still answer."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"openai": [provider("a")]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--config", str(config), "--port", str(port), "--log-level", "debug"]
    process = subprocess.Popen(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env=router_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, "the router exited"
                try:
                    if client.get(url + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the router did not start"
                time.sleep(0.05)
            # Each of these logs a line of several KB: far more than a pipe holds (64 KiB).
            long_model = "model-" + "x" * 2000
            for _ in range(60):
                chat = client.post(
                    url + "/openai/chat/completions",
                    json={"model": long_model, "messages": MESSAGES},
                )
                assert chat.status_code == 200
                assert client.get(url + "/health").status_code == 200
            assert client.get(url + "/health").json()["providers"]["openai"][0]["name"] == "a"
    finally:
        os.kill(process.pid, 9)
        process.wait(10)
        written = process.stderr.read()
        process.stderr.close()
    # The pipe really was full: the lines of many requests never got into it.
    assert written.count(b"-> 200 via a") < 30
