"""``scripts/run`` as a user runs it: from any folder, saying what it does while it installs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from llm_api_router.fake_upstream import FakeUpstreamThread
from tests.scriptvenv import ROOT, SCRIPTS, script_env, wrapper_venv

RUN = str(SCRIPTS / "run")


def stub_python(folder: Path, log: Path) -> Path:
    """An 'interpreter' whose venv's python only records its working directory and arguments."""
    folder.mkdir(parents=True)
    inner = f'#!/bin/sh\necho "$PWD :: $*" >> "{log}"\n'
    stub = folder / "python3"
    stub.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "-c" ] && exit 0\n'
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        '  mkdir -p "$3/bin"\n'
        f"  cat > \"$3/bin/python\" <<'EOF'\n{inner}EOF\n"
        '  chmod +x "$3/bin/python"\n'
        "  exit 0\n"
        "fi\n"
        "exit 1\n"
    )
    stub.chmod(0o755)
    return stub


def test_first_run_says_what_it_is_doing_and_keeps_the_working_directory(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    stub = stub_python(tmp_path / "interpreter", log)
    venv = tmp_path / "venv"
    caller = tmp_path / "caller"
    caller.mkdir()
    env = script_env(venv, PYTHON=str(stub))

    first = subprocess.run(
        [RUN, "--version"], cwd=caller, env=env, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    said = first.stderr
    for step in ("creating the virtualenv", "installing", "1/3", "2/3", "3/3", "installed"):
        assert step in said, said
    assert first.stdout == ""  # progress goes to stderr: stdout is the router's
    calls = log.read_text().splitlines()
    assert [c for c in calls if "pip install" in c], calls
    # Started from the caller's folder, with main.py by its absolute path.
    assert calls[-1] == f"{caller} :: {ROOT / 'main.py'} --version"

    again = subprocess.run(
        [RUN, "--version"], cwd=caller, env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0
    assert again.stderr == ""  # installed once: nothing to say
    assert log.read_text().splitlines()[len(calls) :] == [
        f"{caller} :: {ROOT / 'main.py'} --version"
    ]


def router_config(fake: FakeUpstreamThread, name: str) -> dict[str, Any]:
    return {
        "openai": [
            {"name": name, "api_key": "sk-test-x", "base_url": fake.base_url(name, "openai")}
        ]
    }


def wait_for_provider(url: str, process: subprocess.Popen[bytes]) -> list[str]:
    deadline = time.monotonic() + 20
    with httpx.Client(timeout=5) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the router exited"
            try:
                health = http.get(url + "/health").json()
                return [row["name"] for row in health["providers"]["openai"]]
            except httpx.TransportError:
                time.sleep(0.05)
    raise AssertionError("the router did not start")


def run_router(args: list[str], cwd: Path, venv: Path, port: int, logs: Path) -> list[str]:
    """``scripts/run ARGS --port PORT`` from ``cwd``: the openai provider names it serves."""
    with (logs / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            [RUN, *args, "--port", str(port)],
            cwd=cwd,
            env=script_env(venv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        return wait_for_provider(f"http://127.0.0.1:{port}", process)
    finally:
        os.kill(process.pid, signal.SIGTERM)  # scripts/run exec's python: this is its PID
        process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_relative_paths_mean_the_callers_folder(
    fake_upstream: FakeUpstreamThread, tmp_path: Path
) -> None:
    venv = wrapper_venv(tmp_path / "venv")
    caller = tmp_path / "caller"
    (caller / "conf").mkdir(parents=True)
    (caller / "conf" / "my.json").write_text(json.dumps(router_config(fake_upstream, "mine")))
    names = run_router(["--config", "conf/my.json"], caller, venv, free_port(), tmp_path)
    assert names == ["mine"]
    # The default file, too, is the caller's.
    (caller / "llm_router_config.json").write_text(
        json.dumps(router_config(fake_upstream, "default-here"))
    )
    assert run_router([], caller, venv, free_port(), tmp_path) == ["default-here"]


def test_a_missing_config_error_names_the_absolute_path(tmp_path: Path) -> None:
    venv = wrapper_venv(tmp_path / "venv")
    result = subprocess.run(
        [RUN, "--config", "missing.json"],
        cwd=tmp_path,
        env=script_env(venv),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'missing.json'}: file not found" in result.stderr
