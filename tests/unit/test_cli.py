"""The CLI: arguments, config loading and its one-line errors, with the server patched."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from llm_api_router import cli
from llm_api_router.server import RouterApp


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "serve", lambda app, settings, **kw: calls.append({"app": app, **kw}))
    # The real dictConfig would rewire this test process's logging for every later test.
    monkeypatch.setattr(cli.logging.config, "dictConfig", lambda config: None)
    monkeypatch.delenv(cli.CONFIG_ENV, raising=False)
    return calls


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "LLM_ROUTER_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_defaults(served: list[dict[str, Any]], in_tmp: Path) -> None:
    assert cli.main([]) == cli.EXIT_OK
    (call,) = served
    assert call["host"] == "127.0.0.1"
    assert call["port"] == 8000
    assert call["reload"] is False
    assert isinstance(call["app"], RouterApp)  # one process: the app itself
    assert call["config_path"] is None  # from the environment: nothing to reload
    assert call["watch_config"] is False


def test_config_file_is_what_sighup_reloads(served: list[dict[str, Any]], in_tmp: Path) -> None:
    write(in_tmp / "c.json", {"openai": [{"api_key": "k"}]})
    assert cli.main(["--config", "c.json", "--watch-config"]) == 0
    assert served[-1]["config_path"] == str(in_tmp / "c.json")
    assert served[-1]["watch_config"] is True
    write(in_tmp / cli.DEFAULT_CONFIG_PATH, {"openai": [{"api_key": "k"}]})
    assert cli.main([]) == 0
    assert served[-1]["config_path"] == str(in_tmp / cli.DEFAULT_CONFIG_PATH)


def test_several_workers_get_the_app_factory(served: list[dict[str, Any]], in_tmp: Path) -> None:
    assert cli.main(["--workers", "2"]) == 0
    assert served[-1]["app"] == "llm_api_router.cli:app_from_environment"


def test_host_port_reload(served: list[dict[str, Any]], in_tmp: Path) -> None:
    write(in_tmp / "c.json", {"openai": [{"api_key": "k"}], "auth": {"api_keys": ["r"]}})
    assert cli.main(["--host", "0.0.0.0", "--port", "8080", "--reload", "--config", "c.json"]) == 0
    (call,) = served
    assert (call["host"], call["port"], call["reload"]) == ("0.0.0.0", 8080, True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"openai": [{"api_key": "k", "timeout": -1}]}', "openai[0].timeout: must be greater"),
        ('{"openai": [{"priority": 1}]}', "openai[0].api_key: is required"),
        ('{"openai": [{"api_key": "k", "typo": 1}]}', "openai[0].typo: unknown key"),
        ('{"openai": [{"api_key": "k", "max_retries": "x"}]}', "openai[0].max_retries"),
    ],
)
def test_bad_config_exits_with_one_clear_line(
    served: list[dict[str, Any]],
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    expected: str,
) -> None:
    (in_tmp / "bad.json").write_text(content)
    assert cli.main(["--config", "bad.json"]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "bad.json" in err[0]
    assert expected in err[0]
    assert served == []


def test_missing_explicit_config_is_an_error(
    served: list[dict[str, Any]], in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--config", "nope.json"]) == cli.EXIT_CONFIG_ERROR
    assert "nope.json: file not found" in capsys.readouterr().err


def test_default_config_file_is_used(in_tmp: Path) -> None:
    write(in_tmp / "llm_router_config.json", {"openai": [{"api_key": "k", "name": "from-file"}]})
    assert cli.load_config(None).openai[0].name == "from-file"


def test_environment_fallback(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret")
    config = cli.load_config(None)
    assert [p.name for p in config.openai] == ["openai"]
    assert config.anthropic == ()


def test_router_keys_from_environment(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ROUTER_API_KEYS", "rk-1,rk-2")
    assert len(cli.load_config(None).auth.api_keys) == 2


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_non_loopback_without_router_keys_warns(
    served: list[dict[str, Any]], in_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert cli.main(["--host", "0.0.0.0"]) == 0
    assert any("without router keys" in w for w in warnings(caplog))
    caplog.clear()
    assert cli.main(["--host", "127.0.0.1"]) == 0
    assert cli.main(["--host", "localhost"]) == 0
    assert cli.main(["--host", "::1"]) == 0
    assert warnings(caplog) == []


def test_router_keys_silence_the_warning(
    served: list[dict[str, Any]],
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LLM_ROUTER_API_KEYS", "rk-1")
    assert cli.main(["--host", "0.0.0.0"]) == 0
    assert warnings(caplog) == []


def test_log_format_is_passed_to_the_server(served: list[dict[str, Any]], in_tmp: Path) -> None:
    assert cli.main(["--log-format", "json", "--log-level", "warning"]) == 0
    log_config = served[0]["log_config"]
    assert log_config["formatters"]["router"]["()"].endswith("JsonFormatter")
    assert log_config["loggers"]["llm_api_router"]["level"] == "WARNING"


def test_app_factory_uses_the_validated_path(
    served: list[dict[str, Any]], in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(in_tmp / "c.json", {"anthropic": [{"api_key": "k", "name": "x"}]})
    assert cli.main(["--config", str(path)]) == 0
    monkeypatch.chdir("/")
    app = cli.app_from_environment()
    assert app.title == "LLM API Router"


def test_workers(served: list[dict[str, Any]], in_tmp: Path) -> None:
    assert cli.main(["--workers", "3"]) == 0
    assert served[-1]["workers"] == 3
    assert cli.main([]) == 0
    assert served[-1]["workers"] == 1
    with pytest.raises(SystemExit) as caught:
        cli.main(["--workers", "0"])
    assert caught.value.code == 2


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--version", "--help"):
        with pytest.raises(SystemExit) as caught:
            cli.main([flag])
        assert caught.value.code == 0
    assert "--config" in capsys.readouterr().out


# -- paths, ports, strict numbers, the environment in --help, --demo ------------------------


def test_relative_config_means_the_working_directory_and_errors_name_the_absolute_path(
    served: list[dict[str, Any]], in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "sub").mkdir()
    write(in_tmp / "sub" / "my.json", {"openai": [{"api_key": "k", "name": "mine"}]})
    assert cli.main(["--config", "sub/my.json"]) == cli.EXIT_OK
    assert os.environ[cli.CONFIG_ENV] == str(in_tmp / "sub" / "my.json")
    assert cli.main(["--config", "sub/missing.json"]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert f"{in_tmp / 'sub' / 'missing.json'}: file not found" in err


def test_the_default_config_is_passed_to_server_processes_as_an_absolute_path(
    served: list[dict[str, Any]], in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(in_tmp / "llm_router_config.json", {"openai": [{"api_key": "k", "name": "default"}]})
    assert cli.main([]) == cli.EXIT_OK
    assert os.environ[cli.CONFIG_ENV] == str(in_tmp / "llm_router_config.json")
    # Without a file, a stale LLM_ROUTER_CONFIG must not make workers read another config.
    (in_tmp / "llm_router_config.json").unlink()
    assert cli.main([]) == cli.EXIT_OK
    assert cli.CONFIG_ENV not in os.environ


def test_reload_watches_the_package_not_the_working_directory(
    served: list[dict[str, Any]], in_tmp: Path
) -> None:
    assert cli.main(["--reload"]) == cli.EXIT_OK
    assert served[-1]["reload_dirs"] == [str(Path(cli.__file__).resolve().parent)]


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "eighty"])
def test_a_bad_port_is_rejected_clearly(
    served: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--port", port])
    assert caught.value.code == 2
    assert "argument --port" in capsys.readouterr().err
    assert served == []


def test_port_bounds_are_accepted(served: list[dict[str, Any]], in_tmp: Path) -> None:
    assert cli.main(["--port", "65535"]) == cli.EXIT_OK
    assert cli.main(["--port", "0"]) == cli.EXIT_OK  # any free port
    assert [call["port"] for call in served] == [65535, 0]


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ({"priority": "1"}, "priority"),
        ({"timeout": "30"}, "timeout"),
        ({"max_retries": True}, "max_retries"),
    ],
)
def test_numbers_given_as_strings_are_one_line_config_errors(
    served: list[dict[str, Any]],
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    provider: dict[str, Any],
    field: str,
) -> None:
    write(in_tmp / "c.json", {"openai": [{"api_key": "sk-do-not-echo", **provider}]})
    assert cli.main(["--config", "c.json"]) == cli.EXIT_CONFIG_ERROR
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"openai[0].{field}: must be a valid" in line
    assert "sk-do-not-echo" not in line
    assert served == []


def test_help_names_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "LLM_ROUTER_API_KEYS",
        "--demo",
    ):
        assert name in out


def test_help_names_every_variable_the_code_reads() -> None:
    """A new os.environ / env.get in the package must be documented in --help."""
    package = Path(cli.__file__).resolve().parent
    read: set[str] = set()
    for source in package.rglob("*.py"):
        if source.name == "fake_upstream.py":
            continue  # a test tool, not the router
        text = source.read_text()
        read |= set(re.findall(r"""env(?:iron)?\.get\(\s*f?["']([A-Z_{}a-z]+)["']""", text))
        read |= set(re.findall(r"""environ\[\s*["']([A-Z_]+)["']""", text))
    expanded = set()
    for name in read:
        if "{prefix}" in name:
            expanded |= {name.replace("{prefix}", p) for p in ("OPENAI", "ANTHROPIC")}
        else:
            expanded.add(name)
    internal = {cli.CONFIG_ENV}  # passed from the CLI to its own server processes
    assert expanded - internal, "the scan found nothing: it is broken"
    missing = sorted(n for n in expanded - internal if n not in cli.ENVIRONMENT_HELP)
    assert missing == []


def test_demo_refuses_options_it_cannot_honour(
    served: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cli, "run_demo", lambda *args: ran.append(args))
    for extra in (["--config", "x.json"], ["--reload"], ["--workers", "2"]):
        with pytest.raises(SystemExit) as caught:
            cli.main(["--demo", *extra])
        assert caught.value.code == 2
        assert "--demo" in capsys.readouterr().err
    assert ran == []
    assert cli.main(["--demo", "--port", "8123", "--host", "127.0.0.2"]) == cli.EXIT_OK
    ((host, port, level, log_config),) = ran
    assert (host, port, level) == ("127.0.0.2", 8123, "info")
    assert "handlers" in log_config
    assert served == []
