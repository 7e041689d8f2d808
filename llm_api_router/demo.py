"""``python main.py --demo``: see a fallback with one command, no API key, no file to edit.

The router runs in front of the built-in fake upstream
(:class:`~llm_api_router.fake_upstream.FakeUpstream`, in a thread of this process on a free
loopback port).  Each family has a provider ``primary`` (priority 1) that always answers
429 with ``Retry-After``, and a healthy ``backup`` (priority 2).  Once the router listens,
the exact ``curl`` and SDK lines to try are printed (with the real port); the
``x-router-provider`` / ``x-router-attempts`` headers and ``/health`` then show the fallback.
"""

from __future__ import annotations

import json
import shlex
import socket
import sys
from collections.abc import Callable
from typing import Any, TextIO

import uvicorn

from llm_api_router.config import FAMILIES, Family, RouterConfig
from llm_api_router.fake_upstream import FakeUpstreamThread, rate_limited
from llm_api_router.server import create_app

__all__ = [
    "DEMO_RETRY_AFTER",
    "demo_config",
    "instructions",
    "run_demo",
]

#: Seconds the rate-limited primary asks the router to wait (its Retry-After).
DEMO_RETRY_AFTER = 30
_PRIMARY = "primary"
_BACKUP = "backup"

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-5-5"
_MESSAGES = [{"role": "user", "content": "Hello"}]


def demo_config(base_url: Callable[[str, Family], str]) -> RouterConfig:
    """Two providers per family on the fake upstream: ``base_url(provider, family)``."""
    data: dict[str, Any] = {
        family: [
            {
                "name": name,
                "api_key": f"demo-key-{name}",
                "priority": priority,
                "base_url": base_url(name, family),
                "timeout": 10,
            }
            for priority, name in ((1, _PRIMARY), (2, _BACKUP))
        ]
        for family in FAMILIES
    }
    # The demo never asks for router keys, whatever LLM_ROUTER_API_KEYS says.
    return RouterConfig.from_dict(data, source="demo", environ={})


def instructions(url: str) -> str:
    """What to try against the router at ``url`` (``http://HOST:PORT``)."""
    openai_body = json.dumps({"model": OPENAI_MODEL, "messages": _MESSAGES})
    anthropic_body = json.dumps(
        {"model": ANTHROPIC_MODEL, "max_tokens": 100, "messages": _MESSAGES}
    )
    # Double-quoted Python strings, so that the shell's single quotes wrap them cleanly.
    q = json.dumps
    openai_sdk = (
        "from openai import OpenAI; "
        f"client = OpenAI(base_url={q(url + '/openai')}, api_key={q('unused')}); "
        f"print(client.chat.completions.create(model={q(OPENAI_MODEL)}, "
        f"messages={q(_MESSAGES)}).choices[0].message.content)"
    )
    anthropic_sdk = (
        "from anthropic import Anthropic; "
        f"client = Anthropic(base_url={q(url + '/anthropic')}, api_key={q('unused')}); "
        f"print(client.messages.create(model={q(ANTHROPIC_MODEL)}, max_tokens=100, "
        f"messages={q(_MESSAGES)}).content[0].text)"
    )
    json_header = "-H 'content-type: application/json'"
    return "\n".join(
        [
            f"llm-api-router demo on {url}: each family has a provider '{_PRIMARY}' (priority 1)",
            f"that always answers 429 (Retry-After: {DEMO_RETRY_AFTER}) and a healthy "
            f"'{_BACKUP}' (priority 2),",
            "both on a built-in fake upstream. No API key needed; Ctrl-C stops.",
            "",
            "Try, in another terminal (x-router-provider: backup and x-router-attempts: 2",
            "show the fallback; then /health shows primary cooling down):",
            "",
            f"  curl -si {url}/openai/chat/completions {json_header} -d {shlex.quote(openai_body)}",
            f"  curl -si {url}/anthropic/v1/messages {json_header} "
            f"-d {shlex.quote(anthropic_body)}",
            f"  curl -s {url}/health",
            "",
            "With the SDKs (the openai and anthropic packages; see the README's quick start):",
            "",
            f"  python -c {shlex.quote(openai_sdk)}",
            f"  python -c {shlex.quote(anthropic_sdk)}",
            "",
        ]
    )


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the instructions once it listens."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[int], None]) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.servers:
            port = int(self.servers[0].sockets[0].getsockname()[1])
            self._announce(port)


def run_demo(
    host: str, port: int, log_level: str, log_config: dict[str, Any], out: TextIO | None = None
) -> None:
    """Serve the demo until Ctrl-C / SIGTERM (the fake upstream stops with it)."""
    stream = out if out is not None else sys.stdout
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown

    def announce(bound: int) -> None:
        print(instructions(f"http://{shown}:{bound}"), file=stream, flush=True)

    with FakeUpstreamThread() as fake:
        fake.set_default(_PRIMARY, rate_limited(retry_after=DEMO_RETRY_AFTER))
        config = demo_config(fake.base_url)  # the app's lifespan installs redaction
        server_config = uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            log_level=log_level,
            log_config=log_config,
            access_log=False,
            server_header=False,
        )
        _AnnouncingServer(server_config, announce).run()
