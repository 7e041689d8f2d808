"""``python -m llm_api_router.fake_upstream``: serve the fake until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from .behaviours import error_for_status
from .server import FakeUpstream

__all__ = ["main"]

_DESCRIPTION = (
    "A fake OpenAI / Anthropic upstream: a real HTTP server with on-demand fault injection."
)


def _parse_fail(value: str) -> tuple[str, int]:
    name, sep, status = value.partition("=")
    if not sep or not name or not status.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=STATUS, got {value!r}")
    code = int(status)
    if not 100 <= code <= 599:
        raise argparse.ArgumentTypeError(f"bad HTTP status in {value!r}")
    return name, code


async def _serve(args: argparse.Namespace) -> None:
    upstream = FakeUpstream(stream_interval=args.stream_interval, access_log=args.access_log)
    failing: list[tuple[str, int]] = args.fail
    for name, status in failing:
        upstream.set_default(name, error_for_status(status))
    await upstream.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. on Windows
            loop.add_signal_handler(sig, stop.set)
    fails = ", ".join(f"{name}={status}" for name, status in failing) or "none"
    print(
        f"fake upstream listening on {upstream.url} (providers: any path prefix; failing: {fails})",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await upstream.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: serve until Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(description=_DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--fail",
        type=_parse_fail,
        action="append",
        default=[],
        metavar="NAME=STATUS",
        help="make provider NAME always answer STATUS (429 comes with retry-after: 30)",
    )
    parser.add_argument(
        "--stream-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay between streamed content events",
    )
    parser.add_argument("--access-log", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0
