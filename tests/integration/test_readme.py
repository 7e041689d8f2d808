"""Every README snippet runs as written, in the environment the README has the reader set up.

The Python snippets run against the demo (``--demo``, the port swapped for a free one) with
this interpreter, deprecation warnings as errors; the ``curl`` lines are the demo's own
printed lines (which tests/integration/test_demo.py runs); the packages the snippets import
are in the lock the README tells the reader to install.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from anthropic.resources.messages.messages import DEPRECATED_MODELS
from anthropic.types.model_param import ModelParam

from llm_api_router.demo import instructions
from tests.demoprocess import demo, free_port
from tests.scriptvenv import ROOT, script_env

README = (ROOT / "README.md").read_text()
SDK_LOCK = "requirements/sdk.lock"
INSTALL_SDKS = f".venv/bin/python -m pip install --require-hashes -r {SDK_LOCK}"
DEMO_URL = "http://127.0.0.1:8000"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def imported_modules(code: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def run_snippet(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_sdk_snippets_run_against_the_demo(tmp_path: Path) -> None:
    against_router = [code for code in blocks("python") if DEMO_URL in code]
    assert against_router, "the README has no SDK snippet any more: update this test"
    port = free_port()
    command = [sys.executable, str(ROOT / "main.py"), "--demo", "--port", str(port)]
    with demo(command, cwd=tmp_path, env=script_env(tmp_path), logs=tmp_path):
        for code in against_router:
            result = run_snippet(code.replace(DEMO_URL, f"http://127.0.0.1:{port}"), tmp_path)
            assert result.returncode == 0, result.stderr
            assert "Hello from backup" in result.stdout


def test_the_other_python_snippets_run(tmp_path: Path) -> None:
    others = [code for code in blocks("python") if DEMO_URL not in code]
    assert others
    for code in others:
        result = run_snippet(code, tmp_path)
        assert result.returncode == 0, (code, result.stderr)


def test_the_snippets_imports_are_in_the_lock_the_readme_installs() -> None:
    assert INSTALL_SDKS in "".join(blocks("bash")), "the README must say how to get the SDKs"
    assert README.index(INSTALL_SDKS) < README.index("from openai import OpenAI")
    pinned = set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", (ROOT / SDK_LOCK).read_text(), re.M))
    for code in blocks("python"):
        for module in imported_modules(code) - {"llm_api_router"}:
            assert module in pinned, f"{module} is imported by the README but not in {SDK_LOCK}"


def normalised(line: str) -> str:
    return " ".join(line.split())


def test_the_curl_lines_are_the_ones_the_demo_prints() -> None:
    printed = {normalised(line) for line in instructions(DEMO_URL).splitlines()}
    curls = [
        normalised(line.split("#", 1)[0] if " #" in line else line)
        for code in blocks("bash")
        for line in code.replace("\\\n", " ").splitlines()
        if line.startswith("curl ") and DEMO_URL in line
    ]
    assert curls
    for curl in curls:
        assert curl in printed, curl


@pytest.mark.parametrize("source", ["README.md", "llm_api_router/demo.py"])
def test_anthropic_models_named_are_current(source: str) -> None:
    text = (ROOT / source).read_text()
    # Model names, not header names such as x-claude-code-session-id.
    models = set(re.findall(r"(?<![\w-])claude-[a-z0-9.-]+", text)) - {"claude-code"}
    assert models, source
    known = set(typing.get_args(typing.get_args(ModelParam)[0]))
    for model in models:
        assert model not in DEPRECATED_MODELS, f"{source}: {model} is deprecated"
        assert model in known, f"{source}: {model} is not a model the SDK knows"
