"""--workers: a per-run metrics directory for every worker, a warning without shared state."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from llm_api_router import cli
from llm_api_router.metrics import MULTIPROC_ENV


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def run(app: object, settings: object, **options: Any) -> None:
        directory = os.environ.get(MULTIPROC_ENV)
        calls.append({**options, "metrics_dir": directory})
        assert directory is None or Path(directory).is_dir()

    monkeypatch.setattr(cli, "serve", run)
    monkeypatch.setattr(cli.logging.config, "dictConfig", lambda config: None)
    monkeypatch.delenv(cli.CONFIG_ENV, raising=False)
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.delenv("LLM_ROUTER_REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return calls


def test_workers_share_a_metrics_directory_removed_after_the_run(
    served: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "llm_api_router.cli")
    assert cli.main(["--workers", "3"]) == cli.EXIT_OK
    (call,) = served
    assert call["workers"] == 3
    assert call["metrics_dir"] is not None
    assert not Path(call["metrics_dir"]).exists()
    assert "3 workers without shared state" in caplog.text
    os.environ.pop(MULTIPROC_ENV, None)


def test_one_worker_or_shared_state_gives_no_warning(
    served: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, "llm_api_router.cli")
    assert cli.main([]) == cli.EXIT_OK
    assert served[-1]["metrics_dir"] is None
    monkeypatch.setenv("LLM_ROUTER_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert cli.main(["--workers", "2"]) == cli.EXIT_OK
    assert served[-1]["metrics_dir"] is not None
    os.environ.pop(MULTIPROC_ENV, None)
    assert "without shared state" not in caplog.text
