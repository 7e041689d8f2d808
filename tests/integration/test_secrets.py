"""Secret hygiene: provider and router keys never show in responses, logs, /health, /metrics,
error messages or reprs, whatever the traffic (successes, every failure kind, streams)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from llm_api_router.config import RouterConfig
from llm_api_router.errors import ConfigError
from llm_api_router.fake_upstream import (
    Drop,
    Error,
    FakeUpstreamThread,
    Hang,
    Raw,
    Stream,
    context_too_long,
    insufficient_quota,
    overloaded,
    rate_limited,
)
from llm_api_router.logs import JsonFormatter, logging_config
from llm_api_router.server import create_app
from llm_api_router.upstream import UpstreamResponse
from tests.routerprocess import router_process, wait_until
from tests.routerserver import RouterServer

ROOT = Path(__file__).resolve().parents[2]

KEY_A = "sk-SENTINEL-provider-a-0123456789"
KEY_B = "SENTINEL-provider-b-plain-5555"  # not credential-shaped: only exact redaction helps
KEY_C = "sk-ant-SENTINEL-provider-c-2222"
KEY_D = "SENTINEL-provider-d-plain-3333"
ROUTER_KEY = "rk-SENTINEL-router-9876543210"
ENV_ROUTER_KEY = "SENTINEL-env-router-key-4444"
WRONG_KEY = "SENTINEL-wrong-client-key-777"
SECRETS = (KEY_A, KEY_B, KEY_C, KEY_D, ROUTER_KEY, ENV_ROUTER_KEY, WRONG_KEY)

PRIMARY = {"openai": "sa", "anthropic": "sc"}
BACKUP = {"openai": "sb", "anthropic": "sd"}
PATHS = {"openai": "/openai/chat/completions", "anthropic": "/anthropic/v1/messages"}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-x"}
MAX_BODY = 50_000
SHORT_TIMEOUT = 0.3


def leaks(text: str) -> list[str]:
    """The secrets (or recognisable pieces of them) found in ``text``."""
    found = [s for s in SECRETS if s in text]
    if "SENTINEL" in text:
        found.append("SENTINEL")
    return found


def sentinel_config(fake: FakeUpstreamThread, *, api_key_a: str = KEY_A) -> dict[str, Any]:
    def entry(name: str, family: str, key: str, timeout: float) -> dict[str, Any]:
        return {
            "name": name,
            "api_key": key,
            "base_url": fake.base_url(name, family),
            "priority": 1 if name in PRIMARY.values() else 2,
            "timeout": timeout,
            "max_retries": 0,
            "models": [MODELS[family]],
        }

    return {
        "openai": [
            entry("sa", "openai", api_key_a, SHORT_TIMEOUT),
            entry("sb", "openai", KEY_B, 5),
        ],
        "anthropic": [
            entry("sc", "anthropic", KEY_C, SHORT_TIMEOUT),
            entry("sd", "anthropic", KEY_D, 5),
        ],
        "auth": {"api_keys": [ROUTER_KEY]},
        "settings": {
            # No lasting cooldowns or open circuits: every scenario starts from healthy.
            "rate_limit_cooldown": 0,
            "auth_failure_cooldown": 0,
            "circuit_breaker_threshold": 1000,
            "retry_backoff_base": 0.001,
            "retry_backoff_max": 0.001,
            "max_body_bytes": MAX_BODY,
        },
    }


@dataclass
class Exchange:
    what: str
    status: int
    headers: str
    body: str


def run_traffic(url: str, fake: FakeUpstreamThread, http: httpx.Client) -> list[Exchange]:
    """Representative traffic through both families; every answer is returned."""
    out: list[Exchange] = []

    def send(
        what: str,
        family: str,
        *,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | None = ROUTER_KEY,
        stream: bool = False,
        model: str | None = None,
    ) -> Exchange:
        sent_headers = dict(headers or {})
        if key is not None:
            if family == "openai":
                sent_headers["authorization"] = f"Bearer {key}"
            else:
                sent_headers["x-api-key"] = key
        if content is None:
            data = body if body is not None else _body(family, model)
            if stream:
                data = {**data, "stream": True}
            content = json.dumps(data).encode()
            sent_headers.setdefault("content-type", "application/json")
        response = http.post(url + PATHS[family], content=content, headers=sent_headers)
        exchange = Exchange(
            f"{family}: {what}", response.status_code, repr(response.headers), response.text
        )
        out.append(exchange)
        return exchange

    for family in ("openai", "anthropic"):
        p, s = PRIMARY[family], BACKUP[family]
        assert send("ok", family).status == 200
        fake.script(p, rate_limited(retry_after=0))
        assert send("429 then fallback", family).status == 200
        fake.script(p, overloaded())
        assert send("529 then fallback", family).status == 200
        fake.script(p, Error(500))
        assert send("500 then fallback", family).status == 200
        fake.script(p, Error(401))
        assert send("upstream 401 then fallback", family).status == 200
        fake.script(p, Error(403))
        assert send("upstream 403 then fallback", family).status == 200
        fake.script(p, insufficient_quota())
        assert send("quota then fallback", family).status == 200
        fake.script(p, Drop())
        assert send("drop then fallback", family).status == 200
        fake.script(p, Drop(reset=True))
        assert send("reset then fallback", family).status == 200
        fake.script(p, Hang(5))
        assert send("hang then fallback", family).status == 200
        fake.script(p, Raw(200, b"<html>not json</html>"))
        assert send("invalid body then fallback", family).status == 200
        fake.script(p, Error(404))
        assert send("upstream 404 then fallback", family).status == 200
        fake.script(p, context_too_long())
        assert send("context too long then fallback", family).status == 200
        fake.script(p, Error(400))
        assert send("upstream 400 passed through", family).status == 400
        fake.script(p, rate_limited(retry_after=0))
        fake.script(s, rate_limited(retry_after=0))
        assert send("all rate limited", family).status == 429
        fake.script(p, Error(500))
        fake.script(s, overloaded() if family == "anthropic" else Error(503))
        assert send("all failed", family).status == 502
        fake.script(p, Error(401))
        fake.script(s, Error(401))
        assert send("all keys rejected", family).status == 502
        fake.script(p, Hang(5))
        fake.script(s, Drop())
        assert send("hang and drop", family).status == 502
        # The client's mistakes.
        assert send("bad json", family, content=b"{not json").status == 400
        assert send("missing field", family, body={"model": MODELS[family]}).status == 400
        assert send("too large", family, content=b" " * (MAX_BODY + 1)).status == 413
        plain = {"content-type": "text/plain"}
        assert send("wrong type", family, content=b"{}", headers=plain).status == 415
        gzip = {"content-type": "application/json", "content-encoding": "gzip"}
        assert send("gzip", family, content=b"{}", headers=gzip).status == 415
        assert send("no key", family, key=None).status == 401
        assert send("wrong key", family, key=WRONG_KEY).status == 401
        other_style = (
            {"x-api-key": WRONG_KEY}
            if family == "openai"
            else {"authorization": f"Bearer {WRONG_KEY}"}
        )
        assert send("wrong key, other header", family, key=None, headers=other_style).status == 401
        assert send("model not served", family, model="no-such-model").status == 404
        # Streams.
        ok = send("stream ok", family, stream=True)
        assert ok.status == 200
        assert ("[DONE]" if family == "openai" else "message_stop") in ok.body
        fake.script(p, rate_limited(retry_after=0))
        assert send("stream after 429", family, stream=True).status == 200
        fake.script(p, Stream(error_at=0))
        assert send("stream error before commit", family, stream=True).status == 200
        # ``interval``: later events arrive after the router committed to the stream.
        fake.script(p, Stream(cut_after=2, interval=0.05))
        cut = send("stream cut", family, stream=True)
        assert cut.status == 200
        assert "error" in cut.body
        fake.script(p, Stream(error_at=2, interval=0.05))
        assert "error" in send("stream error event", family, stream=True).body
        fake.script(p, Stream(stall_after=1, interval=0.05))
        assert "error" in send("stream stalled", family, stream=True).body
        fake.script(p, Stream(malformed_at=1))
        send("stream malformed", family, stream=True)
        fake.script(p, Error(401))
        fake.script(s, Error(500))
        assert send("stream all failed", family, stream=True).status == 502
    for path in ("/", "/health", "/metrics", "/openapi.json"):
        response = http.get(url + path)
        assert response.status_code == 200
        out.append(Exchange(path, 200, repr(response.headers), response.text))
    return out


def _body(family: str, model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model or MODELS[family],
        "messages": [{"role": "user", "content": "hi"}],
    }
    if family == "anthropic":
        body["max_tokens"] = 10
    return body


def chat_requests(exchanges: list[Exchange]) -> int:
    return sum(1 for e in exchanges if not e.what.startswith("/"))


def assert_no_leak_in_exchanges(exchanges: list[Exchange]) -> None:
    for exchange in exchanges:
        assert leaks(exchange.body) == [], (exchange.what, exchange.body)
        assert leaks(exchange.headers) == [], (exchange.what, exchange.headers)


# -- in process: every response and every log record ------------------------------------------


def test_no_secret_in_responses_or_logs(
    fake: FakeUpstreamThread,
    http: httpx.Client,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with RouterServer(sentinel_config(fake)) as router:
        exchanges = run_traffic(router.url, fake, http)

        def access_records() -> list[logging.LogRecord]:
            # Chat lines (the other routes have their own, without a family).
            return [
                r
                for r in caplog.records
                if r.name == "llm_api_router.access" and hasattr(r, "family")
            ]

        # Streams are logged once they are over: wait for every request's line.
        wait_until(lambda: len(access_records()) >= chat_requests(exchanges))
    assert_no_leak_in_exchanges(exchanges)
    assert len(access_records()) == chat_requests(exchanges)
    formatter = JsonFormatter()
    for record in caplog.records:
        line = formatter.format(record)
        assert leaks(line) == [], line
        assert leaks(record.getMessage()) == [], record.getMessage()
    assert leaks(caplog.text) == []
    # Bad keys and empty credit are loud (an operator must act), yet name no key.
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("sa" in r.getMessage() for r in loud)
    captured = capfd.readouterr()
    assert leaks(captured.out) == []
    assert leaks(captured.err) == []


def test_no_secret_in_the_fake_upstreams_view_of_the_router_key(
    fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    """The router key is the client's credential: no upstream ever receives it."""
    with RouterServer(sentinel_config(fake)) as router:
        for family in ("openai", "anthropic"):
            headers = {"authorization": f"Bearer {ROUTER_KEY}", "x-api-key": ROUTER_KEY}
            response = http.post(
                router.url + PATHS[family], json=_body(family, None), headers=headers
            )
            assert response.status_code == 200
    seen = fake.requests()
    assert len(seen) == 2
    for request in seen:
        everything = repr(request.headers) + request.body.decode() + request.path + request.query
        assert ROUTER_KEY not in everything
    assert seen[0].headers["authorization"] == f"Bearer {KEY_A}"
    assert seen[1].headers["x-api-key"] == KEY_C


# -- a real server process: --log-format json --log-level debug --------------------------------


def chat_lines(stderr: str) -> int:
    """Access-log lines of chat requests (the other routes have no family)."""
    return sum(
        '"llm_api_router.access"' in line and '"family"' in line for line in stderr.splitlines()
    )


def test_no_secret_in_server_process_output(
    fake: FakeUpstreamThread, http: httpx.Client, tmp_path: Path
) -> None:
    config = sentinel_config(fake, api_key_a="${SENTINEL_TEST_KEY_A}")
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    env = {
        **os.environ,
        "SENTINEL_TEST_KEY_A": KEY_A,
        "LLM_ROUTER_API_KEYS": ENV_ROUTER_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("LLM_ROUTER_CONFIG", None)
    args = ["--config", str(config_path), "--log-format", "json", "--log-level", "debug"]
    names = set(PRIMARY.values()) | set(BACKUP.values())
    with router_process(args, env, tmp_path, http, names) as (url, out_path, err_path):
        exchanges = run_traffic(url, fake, http)
        # The key from the environment works too.
        response = http.post(
            url + PATHS["openai"],
            json=_body("openai", None),
            headers={"x-api-key": ENV_ROUTER_KEY},
        )
        assert response.status_code == 200
        expected = chat_requests(exchanges) + 1
        wait_until(lambda: chat_lines(err_path.read_text()) >= expected)
    assert_no_leak_in_exchanges(exchanges)
    stderr, stdout = err_path.read_text(), out_path.read_text()
    assert leaks(stdout) == [], stdout
    assert leaks(stderr) == [], [line for line in stderr.splitlines() if leaks(line)]
    assert chat_lines(stderr) == expected
    assert "auth_failed" in stderr  # the loud line about a rejected provider key is there


# -- an unexpected exception inside the app, with a key in its message ------------------------


class _ExplodingTransport:
    """A transport that fails the way a bug would: a plain exception naming a key."""

    async def request(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float,
        method: str = "POST",
    ) -> UpstreamResponse:
        raise RuntimeError(f"bug while sending with {headers.get('authorization')} / {KEY_A}")

    async def aclose(self) -> None:
        pass


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "llm_api_router")
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.propagate, logger.level, logger.disabled)
    yield
    for name, (handlers, propagate, level, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers = handlers
        logger.propagate = propagate
        logger.level = level
        logger.disabled = disabled


def test_exception_with_key_is_redacted_in_server_logs(
    fake: FakeUpstreamThread,
    http: httpx.Client,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    config = RouterConfig.from_dict(sentinel_config(fake))
    app = create_app(config, transport=_ExplodingTransport())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_config=logging_config("json", "debug"), access_log=False, lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 10)
        # One keep-alive connection throughout: an internal error must not break it.
        for family in ("openai", "anthropic", "openai"):
            response = http.post(
                f"http://127.0.0.1:{port}{PATHS[family]}",
                json=_body(family, None),
                headers={"authorization": f"Bearer {ROUTER_KEY}"},
            )
            assert response.status_code == 500
            assert leaks(response.text) == []
            assert "RuntimeError" not in response.text
            assert "Traceback" not in response.text
            error = response.json()
            if family == "openai":
                assert error["error"]["message"]
            else:
                assert error["type"] == "error"
                assert error["error"]["type"] == "api_error"
        # Every such request is still counted and access-logged (with its 500).
        metrics = http.get(f"http://127.0.0.1:{port}/metrics").text
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("llm_router_requests_total{") and 'status="500"' in line
        ]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 3
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    err = capsys.readouterr().err
    assert "RuntimeError" in err  # the failure was logged ...
    assert leaks(err) == [], [line for line in err.splitlines() if leaks(line)]  # ... redacted
    assert "bug while sending with [REDACTED] / [REDACTED]" in err
    access = [
        json.loads(line)
        for line in err.splitlines()
        if '"llm_api_router.access"' in line and '"family"' in line  # not the /metrics line
    ]
    assert [entry["status"] for entry in access] == [500, 500, 500]


# -- reprs and error messages of the configuration --------------------------------------------


def test_config_reprs_show_no_secret(fake: FakeUpstreamThread) -> None:
    config = RouterConfig.from_dict(sentinel_config(fake))
    texts = [
        repr(config),
        str(config),
        repr(config.openai[0]),
        str(config.anthropic[1]),
        repr(config.auth),
        repr(config.auth.api_keys),
        repr(config.openai[0].api_key),
        config.model_dump_json(),
        json.dumps(config.model_dump(mode="json")),
        repr(config.model_dump()),
        f"{config.openai[0]}",
        f"{config.openai[0].api_key}",
    ]
    for text in texts:
        assert leaks(text) == [], text
    # The values themselves are intact for the code that needs them.
    assert set(config.secrets()) == {KEY_A, KEY_B, KEY_C, KEY_D, ROUTER_KEY}


@pytest.mark.parametrize(
    "data",
    [
        {"openai": [{"api_key": KEY_A, "timeout": -1}]},
        {"openai": [{"api_key": KEY_A, "priority": "high"}]},
        {"openai": [{"api_key": KEY_A, "unknown_field": KEY_B}]},
        {"openai": [{"api_key": KEY_A, "base_url": "ftp://example.com"}]},
        {"openai": [{"api_key": [KEY_A]}]},
        {"openai": [{"api_key": {"value": KEY_A}}]},
        {"anthropic": [{"api_key": KEY_C, "organization": "org"}]},
        {"openai": [{"name": "x", "api_key": KEY_A}, {"name": "x", "api_key": KEY_B}]},
        {"auth": {"api_keys": ROUTER_KEY}},
        {"auth": {"api_keys": [ROUTER_KEY, ""]}},
        {"auth": {"api_keys": [ROUTER_KEY, 12345]}},
        {"auth": {"api_keys": [ROUTER_KEY], "other": ROUTER_KEY}},
        {"settings": {"max_body_bytes": ROUTER_KEY}},
        {"openai": [{"api_key": KEY_A, "models": {"a": ""}}], "auth": {"api_keys": [ROUTER_KEY]}},
    ],
)
def test_config_errors_show_no_secret(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_dict(data, environ={})
    assert leaks(str(caught.value)) == [], str(caught.value)
    assert leaks(repr(caught.value)) == []


def test_config_file_errors_show_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"openai": [{"api_key": "' + KEY_A + '", "timeout": 0}],}')
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_file(path, environ={})
    assert leaks(str(caught.value)) == []
    path.write_text(json.dumps({"openai": [{"api_key": KEY_A, "timeout": 0}]}))
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_file(path, environ={})
    assert leaks(str(caught.value)) == []
    assert "timeout" in str(caught.value)
