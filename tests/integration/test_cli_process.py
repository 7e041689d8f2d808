"""``python main.py`` as a real subprocess: start-up, config errors, env-only config, warnings.

Every process gets a free port, a bounded wait, its output in files (no pipe can fill up),
and is killed by its PID in ``finally``.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_api_router.fake_upstream import FakeUpstreamThread

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "main.py"
TLS = ssl.create_default_context()
START_TIMEOUT = 15.0  # generous upper bound; start-up normally takes ~1 s
EXIT_TIMEOUT = 10.0
MESSAGES: Any = [{"role": "user", "content": "hi"}]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Only PATH and HOME (plus ``extra``): no provider keys, no router keys."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **extra}


class RouterProcess:
    def __init__(self, proc: subprocess.Popen[bytes], out: Path, err: Path, port: int) -> None:
        self.proc = proc
        self.out = out
        self.err = err
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> float:
        """Seconds until GET /health answered 200 (fails if the process dies or is slow)."""
        started = time.monotonic()
        with httpx.Client(timeout=2, verify=TLS) as client:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"router exited with {self.proc.returncode}: {self.stderr()}")
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                if time.monotonic() - started > timeout:
                    pytest.fail(f"router not healthy after {timeout} s: {self.stderr()}")
                time.sleep(0.05)

    def wait_for_stderr(self, needle: str, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while needle.lower() not in self.stderr().lower():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"{needle!r} not in stderr: {self.stderr()}")
            time.sleep(0.05)
        return self.stderr()


@contextmanager
def run_router(
    args: list[str], *, cwd: Path, env: dict[str, str], logs: Path, port: int | None = None
) -> Iterator[RouterProcess]:
    port = free_port() if port is None else port
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, str(MAIN), "--port", str(port), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
        )
    try:
        yield RouterProcess(proc, out, err, port)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)
        proc.wait(timeout=EXIT_TIMEOUT)


def provider_config(fake: FakeUpstreamThread) -> dict[str, Any]:
    return {
        "openai": [
            {
                "name": "cli-openai",
                "api_key": "sk-test-cli-openai-secret",
                "base_url": fake.base_url("cli-openai", "openai"),
                "timeout": 5,
            }
        ],
        "anthropic": [
            {
                "name": "cli-anthropic",
                "api_key": "sk-test-cli-anthropic-secret",
                "base_url": fake.base_url("cli-anthropic", "anthropic"),
                "timeout": 5,
            }
        ],
    }


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{url}/openai",
        api_key="client-key",
        max_retries=0,
        timeout=10,
        http_client=openai.DefaultHttpxClient(verify=TLS),
    )


def anthropic_client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{url}/anthropic",
        api_key="client-key",
        max_retries=0,
        timeout=10,
        http_client=anthropic.DefaultHttpxClient(verify=TLS),
    )


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warn" in line.lower()]


# --------------------------------------------------------------------------- (1) valid config


def test_starts_with_a_config_file_and_routes_requests(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    config = tmp_path / "router.json"
    config.write_text(json.dumps(provider_config(fake)))
    with run_router(
        ["--config", str(config)], cwd=REPO, env=clean_env(tmp_path), logs=tmp_path / "logs"
    ) as router:
        router.wait_healthy()
        with openai_client(router.url) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        assert raw.parse().choices[0].message.content == "Hello from cli-openai"
        assert raw.headers["x-router-provider"] == "cli-openai"
        with anthropic_client(router.url) as aclient:
            message = aclient.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)
        assert message.content[0].text == "Hello from cli-anthropic"  # type: ignore[union-attr]
        with httpx.Client(timeout=5, verify=TLS) as http:
            health = http.get(router.url + "/health")
        stderr = router.stderr()
    (openai_request,) = fake.requests("cli-openai")
    assert openai_request.headers["authorization"] == "Bearer sk-test-cli-openai-secret"
    (anthropic_request,) = fake.requests("cli-anthropic")
    assert anthropic_request.headers["x-api-key"] == "sk-test-cli-anthropic-secret"
    assert "cli-openai" in health.text
    assert "secret" not in health.text
    assert "secret" not in stderr, "provider keys must not appear in logs"
    assert warning_lines(stderr) == [], "no warning on a loopback address"


def test_default_config_file_in_the_working_directory_is_used(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    (tmp_path / "llm_router_config.json").write_text(json.dumps(provider_config(fake)))
    with run_router([], cwd=tmp_path, env=clean_env(tmp_path), logs=tmp_path / "logs") as router:
        router.wait_healthy()
        with openai_client(router.url) as client:
            completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == "Hello from cli-openai"


# --------------------------------------------------------------------------- (2) invalid config

MISSING = object()  # the config file is not created at all

# id: (file content, field the message must name, words of which it must contain one)
INVALID_CONFIGS: dict[str, tuple[Any, str | None, tuple[str, ...]]] = {
    "bad-json": ('{"openai": [{"api_key": "k",, }]}', None, ("json",)),
    "negative-timeout": (
        {"openai": [{"api_key": "sk-must-not-echo", "timeout": -1}]},
        "openai[0].timeout",
        ("greater than", "positive", "> 0", "negative"),
    ),
    "missing-api-key": (
        {"openai": [{"name": "nokey", "priority": 1}]},
        "openai[0].api_key",
        ("required", "missing"),
    ),
    "unknown-provider-key": (
        {"anthropic": [{"api_key": "sk-must-not-echo", "tiemout": 5}]},
        "anthropic[0].tiemout",
        ("unknown", "not permitted", "not allowed", "extra"),
    ),
    "unknown-top-level-key": (
        {"openai": [], "setings": {}},
        "setings",
        ("unknown", "not permitted", "not allowed", "extra"),
    ),
    "wrong-type": (
        {"openai": [{"api_key": "sk-must-not-echo", "max_retries": "three"}]},
        "openai[0].max_retries",
        ("integer", "int", "number", "type"),
    ),
    "unset-env-var": (
        {"openai": [{"api_key": "${ROUTER_TEST_SURELY_UNSET_VAR}"}]},
        "ROUTER_TEST_SURELY_UNSET_VAR",
        ("not set", "unset", "missing", "undefined"),
    ),
    "missing-file": (MISSING, None, ("not found", "no such", "does not exist", "missing")),
}


@dataclass
class Finished:
    returncode: int | None  # None: still running at the deadline (it was killed)
    stderr: str


@pytest.fixture(scope="module")
def invalid_config_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """Start one router per invalid config, all at once (each costs ~1 s of imports)."""
    base = tmp_path_factory.mktemp("invalid-configs")
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    results: dict[str, Finished] = {}
    try:
        for case_id, (content, _, _) in INVALID_CONFIGS.items():
            folder = base / case_id
            folder.mkdir()
            config = folder / "broken-config.json"
            if content is not MISSING:
                text = content if isinstance(content, str) else json.dumps(content)
                config.write_text(text)
            err = folder / "stderr.txt"
            with err.open("wb") as err_file:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        str(MAIN),
                        "--port",
                        str(free_port()),
                        "--config",
                        str(config),
                    ],
                    cwd=REPO,
                    env=clean_env(folder),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err_file,
                )
            running[case_id] = (proc, err)
        # All start at once on a possibly small, busy machine: a generous common deadline.
        deadline = time.monotonic() + 3 * EXIT_TIMEOUT
        for case_id, (proc, err) in running.items():
            try:
                returncode: int | None = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                returncode = None
            results[case_id] = Finished(returncode, err.read_text(errors="replace"))
    finally:
        for proc, _ in running.values():
            if proc.poll() is None:
                os.kill(proc.pid, 9)
            proc.wait(timeout=EXIT_TIMEOUT)
    return results


@pytest.mark.parametrize("case_id", list(INVALID_CONFIGS))
def test_invalid_config_exits_2_with_one_clear_line(
    invalid_config_runs: dict[str, Finished], case_id: str
) -> None:
    _, field, problem_words = INVALID_CONFIGS[case_id]
    run = invalid_config_runs[case_id]
    stderr = run.stderr
    assert run.returncode is not None, f"an invalid config did not stop start-up: {stderr}"
    assert run.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    (line,) = lines
    assert "Traceback" not in stderr
    assert "broken-config.json" in line
    if field is not None:
        assert field in line, line
    lowered = line.lower()
    assert any(word in lowered for word in problem_words), line
    assert "sk-must-not-echo" not in stderr


# --------------------------------------------------------------------------- (3) nothing set


def test_no_config_and_no_env_keys_starts_and_answers_503(tmp_path: Path) -> None:
    with run_router([], cwd=tmp_path, env=clean_env(tmp_path), logs=tmp_path / "logs") as router:
        router.wait_healthy()
        with httpx.Client(timeout=5, verify=TLS) as http:
            openai_response = http.post(
                router.url + "/openai/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
            )
            anthropic_response = http.post(
                router.url + "/anthropic/v1/messages",
                json={"model": "claude-x", "max_tokens": 5, "messages": MESSAGES},
            )
            health = http.get(router.url + "/health")
        stderr = router.stderr()
    # Said at start-up, with the fix, and in /health (still 200: the process is alive).
    (warning,) = warning_lines(stderr)
    assert "no provider is configured" in warning.lower()
    assert "--config" in warning and "OPENAI_API_KEY" in warning
    assert health.status_code == 200
    assert health.json()["status"] == "no_providers"
    assert "OPENAI_API_KEY" in health.json()["message"]
    assert openai_response.status_code == 503
    error = openai_response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert "OPENAI_API_KEY" in error["message"]
    assert anthropic_response.status_code == 503
    body = anthropic_response.json()
    assert body["type"] == "error"
    assert "ANTHROPIC_API_KEY" in body["error"]["message"]


# --------------------------------------------------------------------------- (4) env only


def test_env_only_config_routes_to_the_env_base_url(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    env = clean_env(
        tmp_path,
        OPENAI_API_KEY="sk-test-env-openai-secret",
        OPENAI_BASE_URL=fake.base_url("env-openai", "openai"),
        ANTHROPIC_API_KEY="sk-test-env-anthropic-secret",
        ANTHROPIC_BASE_URL=fake.base_url("env-anthropic", "anthropic"),
    )
    with run_router([], cwd=tmp_path, env=env, logs=tmp_path / "logs") as router:
        router.wait_healthy()
        with openai_client(router.url) as client:
            completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with anthropic_client(router.url) as aclient:
            message = aclient.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)
        stderr = router.stderr()
    assert completion.choices[0].message.content == "Hello from env-openai"
    assert message.content[0].text == "Hello from env-anthropic"  # type: ignore[union-attr]
    (openai_request,) = fake.requests("env-openai")
    assert openai_request.headers["authorization"] == "Bearer sk-test-env-openai-secret"
    (anthropic_request,) = fake.requests("env-anthropic")
    assert anthropic_request.headers["x-api-key"] == "sk-test-env-anthropic-secret"
    assert "secret" not in stderr


def test_env_only_openai_leaves_anthropic_unconfigured(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    env = clean_env(
        tmp_path,
        OPENAI_API_KEY="sk-test-env-openai-secret",
        OPENAI_BASE_URL=fake.base_url("env-openai", "openai"),
    )
    with run_router([], cwd=tmp_path, env=env, logs=tmp_path / "logs") as router:
        router.wait_healthy()
        with httpx.Client(timeout=5, verify=TLS) as http:
            ok = http.post(
                router.url + "/openai/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES},
            )
            missing = http.post(
                router.url + "/anthropic/v1/messages",
                json={"model": "claude-x", "max_tokens": 5, "messages": MESSAGES},
            )
    assert ok.status_code == 200
    assert missing.status_code == 503
    assert "ANTHROPIC_API_KEY" in missing.json()["error"]["message"]


# --------------------------------------------------------------------------- (5) public bind


def test_public_bind_without_router_keys_warns(tmp_path: Path) -> None:
    with run_router(
        ["--host", "0.0.0.0"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        logs=tmp_path / "logs",
        port=0,
    ) as router:
        stderr = router.wait_for_stderr("0.0.0.0")
    warnings = warning_lines(stderr)
    assert warnings, stderr
    assert any("key" in line.lower() for line in warnings), warnings


def test_public_bind_with_router_keys_does_not_warn(tmp_path: Path) -> None:
    port = free_port("0.0.0.0")
    # A provider (never called), so that no "no provider" warning is due either.
    env = clean_env(tmp_path, LLM_ROUTER_API_KEYS="router-key-1", OPENAI_API_KEY="sk-test-unused")
    with run_router(
        ["--host", "0.0.0.0"], cwd=tmp_path, env=env, logs=tmp_path / "logs", port=port
    ) as router:
        router.wait_healthy()
        stderr = router.stderr()
    assert warning_lines(stderr) == [], stderr
    assert "router-key-1" not in stderr
