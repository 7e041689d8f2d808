"""Run ``scripts/*`` in tests without installing anything: a virtualenv that is a wrapper.

``LLM_ROUTER_VENV`` points the scripts at a folder whose ``bin/python`` runs this test
run's interpreter, with the "installed" stamps in place, so ``scripts/run`` goes straight
to ``main.py``: what the test sees is the script's own behaviour (working directory,
arguments, output), not pip's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def wrapper_venv(folder: Path) -> Path:
    """A ready 'virtualenv' in ``folder`` whose python is ``sys.executable``."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    for lock in (ROOT / "requirements").glob("*.lock"):
        (folder / f".installed-{lock.name}").touch()
    return folder


def script_env(venv: Path, **extra: str) -> dict[str, str]:
    """The test's environment for a script, with ``venv`` and no router settings."""
    env = {**os.environ, "LLM_ROUTER_VENV": str(venv), "PYTHONUNBUFFERED": "1", **extra}
    for name in ("LLM_ROUTER_API_KEYS", "LLM_ROUTER_CONFIG", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        if name not in extra:
            env.pop(name, None)
    return env
