"""Operating the router process: SIGTERM drains with a deadline and ends every open stream
natively; SIGHUP (or --watch-config) reloads the config file without losing a request.

Each test runs ``python main.py`` in a subprocess against the session's fake upstream,
signals it by PID and stops it by PID in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llm_api_router.fake_upstream import (
    Error,
    FakeUpstreamThread,
    Hang,
    Ok,
    Stream,
    rate_limited,
)
from tests.routerprocess import ROOT, wait_until

START_TIMEOUT = 20.0
OPENAI_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {**OPENAI_BODY, "max_tokens": 10}


@dataclass
class Router:
    proc: subprocess.Popen[bytes]
    url: str
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def json_lines(self, logger: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.stderr().splitlines() if line.startswith("{")]
        return [line for line in lines if line["logger"] == logger]

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)


@contextmanager
def router(args: list[str], tmp_path: Path) -> Iterator[Router]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("LLM_ROUTER_CONFIG", "LLM_ROUTER_API_KEYS", "OPENAI_API_KEY"):
        env.pop(name, None)
    with err.open("wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "main.py", *args, "--log-format", "json", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
    running = Router(proc, f"http://127.0.0.1:{port}", err)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, running.stderr()
            try:
                if httpx.get(running.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, running.stderr()
            time.sleep(0.05)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def provider(fake: FakeUpstreamThread, name: str, family: str = "openai", **extra: Any) -> Any:
    return {
        "name": name,
        "api_key": f"sk-test-{name}",
        "base_url": fake.base_url(name, family),
        "timeout": 10,
        **extra,
    }


@dataclass
class StreamRead:
    """A client stream read to its end in a thread."""

    url: str
    body: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)
    provider: str | None = None
    error: BaseException | None = None
    ended_at: float | None = None
    thread: threading.Thread | None = None

    def start(self) -> StreamRead:
        def read() -> None:
            try:
                with (
                    httpx.Client(timeout=30) as client,
                    client.stream("POST", self.url, json={**self.body, "stream": True}) as reply,
                ):
                    assert reply.status_code == 200
                    self.provider = reply.headers["x-router-provider"]
                    for chunk in reply.iter_raw():
                        self.data.extend(chunk)
            except BaseException as exc:
                self.error = exc
            self.ended_at = time.monotonic()

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()
        return self

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, repr(self.error)

    def events(self) -> list[str]:
        return [event for event in bytes(self.data).decode().split("\n\n") if event.strip()]


def assert_ended_by_shutdown(stream: StreamRead, family: str) -> None:
    """The body ended properly and its last event is the family's native 503 error."""
    stream.join()
    last = stream.events()[-1]
    if family == "openai":
        assert last.startswith("data: "), last
        error = json.loads(last.removeprefix("data: "))["error"]
        assert error["code"] == "shutting_down"
    else:
        name, data = last.split("\n", 1)
        assert name == "event: error"
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == "error"
        error = payload["error"]
    assert "shutting down" in error["message"]
    assert len(stream.events()) > 2  # it was a real stream, cut in its middle


# -- item 7: SIGTERM drains with a deadline, then ends open streams natively --------------------


def test_sigterm_drains_then_ends_every_open_stream_natively_within_the_deadline(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    long = Stream(text="word " * 400, chunks=400, interval=0.05)  # 20 s
    fake.set_default("sd-o", long)
    fake.set_default("sd-a", long)
    fake.set_default("sd-short", Stream(text="a b c d e", chunks=5, interval=0.2))  # 1 s
    fake.set_default("sd-hang", Hang(60))
    config = {
        "openai": [
            provider(fake, "sd-short", models=["short"]),
            provider(fake, "sd-hang", models=["hang"], timeout=60),
            provider(fake, "sd-o", priority=2),
        ],
        "anthropic": [provider(fake, "sd-a", "anthropic")],
        "settings": {"shutdown_timeout": 2},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with router(["--config", str(path)], tmp_path) as running:
        openai_url = running.url + "/openai/v1/chat/completions"
        anthropic_url = running.url + "/anthropic/v1/messages"
        streams = [StreamRead(openai_url, OPENAI_BODY).start() for _ in range(3)]
        streams += [StreamRead(anthropic_url, ANTHROPIC_BODY).start() for _ in range(2)]
        wait_until(lambda: all(len(s.events()) >= 3 for s in streams), timeout=10)
        short = StreamRead(openai_url, {**OPENAI_BODY, "model": "short"}).start()
        wait_until(lambda: len(short.events()) >= 1, timeout=10)
        with ThreadPoolExecutor(1) as pool:
            hung = pool.submit(
                httpx.post, openai_url, json={**OPENAI_BODY, "model": "hang"}, timeout=30
            )
            wait_until(lambda: len(fake.requests("sd-hang")) == 1)

            signalled = time.monotonic()
            running.signal(signal.SIGTERM)
            running.proc.wait(15)
            exited = time.monotonic() - signalled
            # A request still waiting for its upstream gets a native 503 at the end.
            reply = hung.result(10)
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "shutting_down"

        # The short stream finished naturally during the drain.
        short.join()
        assert short.events()[-1] == "data: [DONE]"
        for stream in streams:
            assert_ended_by_shutdown(stream, "openai" if "openai" in stream.url else "anthropic")
            assert stream.ended_at is not None
            assert stream.ended_at - signalled >= 1.5  # they ran on through the drain
        assert exited < 2 + 3  # the deadline, plus a generous margin for the exit itself
        access = [line for line in running.json_lines("llm_api_router.access") if line["stream"]]
        outcomes = sorted(line["stream_outcome"] for line in access)
        assert outcomes == ["complete"] + ["interrupted"] * 5, access
        assert running.proc.returncode in (0, -signal.SIGTERM)
    assert [line["status"] for line in access] == [200] * 6


def test_a_second_signal_ends_the_streams_at_once(fake: FakeUpstreamThread, tmp_path: Path) -> None:
    fake.set_default("sd2-o", Stream(text="word " * 400, chunks=400, interval=0.05))
    config = {"openai": [provider(fake, "sd2-o")], "settings": {"shutdown_timeout": 60}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with router(["--config", str(path)], tmp_path) as running:
        url = running.url + "/openai/chat/completions"
        streams = [StreamRead(url, OPENAI_BODY).start() for _ in range(2)]
        wait_until(lambda: all(len(s.events()) >= 3 for s in streams), timeout=10)
        running.signal(signal.SIGTERM)
        time.sleep(1.0)
        assert running.proc.poll() is None  # draining: the streams go on
        before = [len(s.events()) for s in streams]
        wait_until(lambda: all(len(s.events()) > n for s, n in zip(streams, before, strict=True)))
        signalled = time.monotonic()
        running.signal(signal.SIGINT)
        running.proc.wait(15)
        assert time.monotonic() - signalled < 5  # not the 60 s deadline
        for stream in streams:
            assert_ended_by_shutdown(stream, "openai")


# -- item 12: SIGHUP and --watch-config reload without losing a request -----------------------


class Load:
    """Requests in a loop from two threads; every answer recorded."""

    def __init__(self, url: str) -> None:
        self.url = url + "/openai/chat/completions"
        self.results: list[tuple[int, str | None]] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    reply = client.post(self.url, json=OPENAI_BODY)
                except httpx.HTTPError as exc:
                    self.failures.append(exc)
                    continue
                self.results.append((reply.status_code, reply.headers.get("x-router-provider")))

    def last_provider(self) -> str | None:
        return self.results[-1][1] if self.results else None


def test_sighup_reloads_under_load_without_losing_a_request(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    fake.set_default("rl-old", Ok(delay=0.02))
    fake.set_default("rl-new", Ok(delay=0.02))
    fake.set_default("rl-stream", Stream(text="a b c d e f g h i j", chunks=10, interval=0.2))
    # rl-keep is in a long cooldown when the config changes: it stays there.
    fake.set_default("rl-keep", rate_limited(retry_after=300))
    keep = provider(fake, "rl-keep", models=["keep"])
    old = {
        "openai": [
            provider(fake, "rl-old", models=["m"]),
            provider(fake, "rl-stream", models=["slow"]),
            keep,
        ]
    }
    new = {"openai": [provider(fake, "rl-new", models=["m"]), keep]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    with router(["--config", str(path)], tmp_path) as running:
        chat = running.url + "/openai/chat/completions"
        assert httpx.post(chat, json={**OPENAI_BODY, "model": "keep"}).status_code == 429
        with Load(running.url) as load:
            wait_until(lambda: load.last_provider() == "rl-old")
            in_flight = StreamRead(chat, {**OPENAI_BODY, "model": "slow"}).start()
            wait_until(lambda: len(in_flight.events()) >= 2)
            path.write_text(json.dumps(new))
            running.signal(signal.SIGHUP)
            wait_until(lambda: load.last_provider() == "rl-new")
            served = len(load.results)
            wait_until(lambda: len(load.results) > served + 20)
        in_flight.join()
        assert in_flight.provider == "rl-stream"
        assert in_flight.events()[-1] == "data: [DONE]"  # finished on the old config
        assert load.failures == []
        assert {status for status, _ in load.results} == {200}
        providers = [name for _, name in load.results]
        switched = providers.index("rl-new")
        assert set(providers[:switched]) == {"rl-old"}
        assert set(providers[switched + 1 :]) == {"rl-new"}  # one may still race the swap
        assert running.proc.poll() is None
        health = httpx.get(running.url + "/health").json()["providers"]["openai"]
        assert [row["name"] for row in health] == ["rl-new", "rl-keep"]
        assert health[1]["state"] == "cooling_down"
        assert health[1]["cooldown_seconds_left"] > 250

        # An invalid config is rejected with one line; the running one stays.
        path.write_text(json.dumps({"openai": [{"api_key": "k", "typo": 1}]}))
        running.signal(signal.SIGHUP)
        wait_until(lambda: "config reload rejected" in running.stderr())
        reply = httpx.post(chat, json=OPENAI_BODY)
        assert (reply.status_code, reply.headers["x-router-provider"]) == (200, "rl-new")
        rejected = [
            line
            for line in running.json_lines("llm_api_router.serve")
            if "reload" in line["message"]
        ]
        assert len(rejected) == 2  # "reloaded" once, "rejected" once
        assert "openai[0].typo: unknown key" in rejected[-1]["message"]
        assert "sk-test" not in running.stderr()


def test_watch_config_reloads_when_the_file_changes(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    fake.set_default("wc-old", Ok())
    fake.set_default("wc-new", Ok())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"openai": [provider(fake, "wc-old")]}))
    with router(["--config", str(path), "--watch-config"], tmp_path) as running:
        chat = running.url + "/openai/chat/completions"
        assert httpx.post(chat, json=OPENAI_BODY).headers["x-router-provider"] == "wc-old"
        path.write_text(json.dumps({"openai": [provider(fake, "wc-new")]}))
        later = time.time() + 5  # an mtime that differs even on a coarse clock
        os.utime(path, (later, later))

        def answered_by_new() -> bool:
            return httpx.post(chat, json=OPENAI_BODY).headers["x-router-provider"] == "wc-new"

        wait_until(answered_by_new, timeout=10)


def test_reload_keeps_failure_counts_by_provider_name(
    fake: FakeUpstreamThread, tmp_path: Path
) -> None:
    """A provider whose circuit is open is still open after a reload that keeps it."""
    fake.set_default("cb-x", Error(500))
    config = {
        "openai": [provider(fake, "cb-x", max_retries=0)],
        "settings": {"circuit_breaker_threshold": 2, "circuit_breaker_cooldown": 300},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with router(["--config", str(path)], tmp_path) as running:
        chat = running.url + "/openai/chat/completions"
        for _ in range(2):
            httpx.post(chat, json=OPENAI_BODY)
        config["openai"][0]["timeout"] = 7  # a change to the same provider
        path.write_text(json.dumps(config))
        running.signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded" in running.stderr())
        (row,) = httpx.get(running.url + "/health").json()["providers"]["openai"]
        assert row["state"] == "circuit_open"
