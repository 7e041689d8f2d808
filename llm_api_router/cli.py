"""Command line: parse arguments, load the config, run the ASGI server.  The only place that exits.

The server process (or each worker, or the reloader's child) builds its app with
:func:`app_from_environment`, from the config path the parent validated and passed down in
``LLM_ROUTER_CONFIG``.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from llm_api_router._version import __version__
from llm_api_router.config import DEFAULT_CONFIG_PATH, RouterConfig
from llm_api_router.demo import run_demo
from llm_api_router.errors import ConfigError
from llm_api_router.logs import Redactor, install_redaction, logging_config
from llm_api_router.metrics import MULTIPROC_ENV
from llm_api_router.serve import serve, settle_heap
from llm_api_router.server import create_app

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EXIT_CONFIG_ERROR",
    "EXIT_OK",
    "ENVIRONMENT_HELP",
    "app_from_environment",
    "config_file",
    "load_config",
    "main",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
EXIT_OK = 0
EXIT_CONFIG_ERROR = 2

CONFIG_ENV = "LLM_ROUTER_CONFIG"

logger = logging.getLogger("llm_api_router.cli")


ENVIRONMENT_HELP = """\
environment variables:
  OPENAI_API_KEY, OPENAI_BASE_URL        without a config file: the openai provider
  ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL  without a config file: the anthropic provider
  LLM_ROUTER_API_KEYS                    router keys clients must send (comma-separated),
                                         added to the config's auth.api_keys
  ${VAR} in the config file              any variable, replaced when the config is loaded
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-api-router",
        description="OpenAI and Anthropic endpoints with priority routing and automatic fallback.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help=f"JSON config file, relative to the working directory (default "
        f"./{DEFAULT_CONFIG_PATH}; without one, providers come from OPENAI_API_KEY / "
        "ANTHROPIC_API_KEY)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="try it without API keys: the router in front of a built-in fake upstream whose "
        "primary providers are rate limited; prints what to try",
    )
    parser.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    parser.add_argument(
        "--watch-config",
        action="store_true",
        help="reload the config file when it changes, as on SIGHUP (one worker)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes, to use more cores (default 1); they share provider state "
        "only through Redis (state.redis_url or LLM_ROUTER_REDIS_URL)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text for people, json for log pipelines: one object per line (default text)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def config_file(path: str | None) -> Path | None:
    """The absolute path of the config file to read, or None to build it from the environment.

    A relative ``path`` (and the default ./llm_router_config.json) means the working directory,
    as in a shell; errors then name the absolute path that was tried.
    """
    if path is not None:
        return Path(path).absolute()
    default = Path(DEFAULT_CONFIG_PATH).absolute()
    return default if default.exists() else None


def load_config(path: str | None, environ: dict[str, str] | None = None) -> RouterConfig:
    """The config at ``path``; without a path, ./llm_router_config.json or the environment."""
    env = dict(os.environ) if environ is None else environ
    file = config_file(path)
    if file is None:
        return RouterConfig.from_env(env)
    return RouterConfig.from_file(file, environ=env)


def app_from_environment() -> FastAPI:
    """App factory for server processes: the config named by LLM_ROUTER_CONFIG (or env)."""
    app = create_app(load_config(os.environ.get(CONFIG_ENV) or None))
    settle_heap()
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_config = logging_config(args.log_format, args.log_level)
    if args.demo:
        if args.config is not None or args.reload or args.workers != 1:
            parser.error(
                "--demo runs its own config in one process: no --config/--reload/--workers"
            )
        run_demo(args.host, args.port, args.log_level, log_config)
        return EXIT_OK
    try:
        file = config_file(args.config)
        config = load_config(None if file is None else str(file))
    except ConfigError as exc:
        print(f"llm-api-router: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    logging.config.dictConfig(log_config)
    install_redaction(Redactor(config.secrets()))
    if not config.auth.api_keys and not _is_loopback(args.host):
        logger.warning(
            "listening on %s without router keys: anyone who can reach this port can spend "
            "your provider credit. Set auth.api_keys in the config or LLM_ROUTER_API_KEYS.",
            args.host,
        )
    # Server processes (workers, the reloader's child) load exactly the file validated here.
    if file is not None:
        os.environ[CONFIG_ENV] = str(file)
    else:
        os.environ.pop(CONFIG_ENV, None)
    one_process = not args.reload and args.workers == 1
    workers = 1 if args.reload else args.workers
    if workers > 1 and config.state.redis_url is None:
        logger.warning(
            "%d workers without shared state: each worker learns about provider failures "
            "alone. Set state.redis_url in the config or LLM_ROUTER_REDIS_URL to share it.",
            workers,
        )
    metrics_dir = _multiprocess_metrics() if workers > 1 else None
    try:
        serve(
            create_app(config) if one_process else "llm_api_router.cli:app_from_environment",
            config.settings,
            config_path=None if file is None else str(file),
            watch_config=args.watch_config,
            workers=args.workers,
            reload=args.reload,
            # The package, not the working directory (which may be anywhere).
            reload_dirs=[str(Path(__file__).resolve().parent)] if args.reload else None,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            log_config=log_config,
            access_log=False,
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)  # it names the directory just removed
    return EXIT_OK


def _multiprocess_metrics() -> str:
    """A fresh directory where every worker keeps its metrics, so /metrics counts them all."""
    path = tempfile.mkdtemp(prefix="llm-router-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:  # 0: any free port
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, not {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
