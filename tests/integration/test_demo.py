"""``python main.py --demo`` and ``scripts/run --demo``: one command shows a fallback.

Each demo runs as a subprocess on a free port; the test runs exactly what it prints (the
curl lines through httpx, the SDK lines through this interpreter) and stops it by its PID.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.demoprocess import demo, free_port, printed, run_curl
from tests.scriptvenv import ROOT, SCRIPTS, script_env, wrapper_venv


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
