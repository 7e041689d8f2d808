"""Helpers for the streaming integration tests: bodies, a timed raw SSE reader, /health, SDKs."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai

from tests.routerserver import RouterServer

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-x"
MESSAGES: Any = [{"role": "user", "content": "hi"}]  # Any: the SDKs want their TypedDicts
MAX_TOKENS = 64

#: Every client-facing chat route, with its family.
ROUTES: tuple[tuple[str, str], ...] = (
    ("openai", "/openai/chat/completions"),
    ("openai", "/openai/v1/chat/completions"),
    ("anthropic", "/anthropic/chat/completions"),
    ("anthropic", "/anthropic/v1/messages"),
)
OPENAI_ROUTES = tuple(r for r in ROUTES if r[0] == "openai")
ANTHROPIC_ROUTES = tuple(r for r in ROUTES if r[0] == "anthropic")

#: Read timeout of every client (seconds): a router hang shows up as a timeout, not a 60 s stall.
CLIENT_TIMEOUT = 5.0


def split_text(text: str, pieces: int) -> list[str]:
    """How the fake upstream splits ``text`` into content events (same formula)."""
    n = len(text)
    return [text[i * n // pieces : (i + 1) * n // pieces] for i in range(pieces)]


def stream_body(family: str, **extra: Any) -> dict[str, Any]:
    """A valid streaming request body of ``family``."""
    body: dict[str, Any] = {
        "model": OPENAI_MODEL if family == "openai" else ANTHROPIC_MODEL,
        "messages": MESSAGES,
        "stream": True,
    }
    if family == "anthropic":
        body["max_tokens"] = MAX_TOKENS
    body.update(extra)
    return body


def closed_port() -> int:
    """A loopback port on which nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- raw SSE


@dataclass(frozen=True)
class SSE:
    """One server-sent event as the client received it, with its arrival time."""

    raw: str
    event: str | None
    data: str
    at: float

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except ValueError:
            return None

    @property
    def is_done(self) -> bool:
        return self.data.strip() == "[DONE]"

    def is_error(self, family: str) -> bool:
        """True for the family's native error event."""
        data = self.json()
        if family == "openai":
            return isinstance(data, dict) and isinstance(data.get("error"), dict)
        return (
            self.event == "error"
            and isinstance(data, dict)
            and data.get("type") == "error"
            and isinstance(data.get("error"), dict)
        )

    def content(self, family: str) -> str | None:
        """The text carried by a content event, else None."""
        data = self.json()
        if not isinstance(data, dict):
            return None
        if family == "openai":
            parts = [
                c["delta"]["content"]
                for c in data.get("choices") or []
                if isinstance(c, dict)
                and isinstance(c.get("delta"), dict)
                and isinstance(c["delta"].get("content"), str)
            ]
            return "".join(parts) if parts else None
        if data.get("type") == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                return str(delta["text"])
        return None


def _parse_block(block: str, at: float) -> SSE:
    event: str | None = None
    data: list[str] = []
    for line in block.split("\n"):
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    return SSE(raw=block, event=event, data="\n".join(data), at=at)


class SSESplitter:
    """Feed bytes, get whole events (timestamped on arrival of their blank line)."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, chunk: bytes) -> list[SSE]:
        now = time.monotonic()
        self._buffer += chunk.decode("utf-8", errors="replace")
        self._buffer = self._buffer.replace("\r\n", "\n")
        events = []
        while (end := self._buffer.find("\n\n")) >= 0:
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            if block.strip("\n"):
                events.append(_parse_block(block.strip("\n"), now))
        return events

    @property
    def rest(self) -> str:
        return self._buffer


@dataclass
class RawStream:
    """What a raw HTTP client saw of one streamed answer."""

    family: str
    status: int
    headers: httpx.Headers
    started: float
    ended: float = 0.0
    body: str = ""
    events: list[SSE] = field(default_factory=list)
    error: httpx.TransportError | None = None  # how the read ended, if not cleanly

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    @property
    def contents(self) -> list[SSE]:
        return [e for e in self.events if e.content(self.family)]

    @property
    def text(self) -> str:
        return "".join(e.content(self.family) or "" for e in self.events)

    @property
    def errors(self) -> list[SSE]:
        return [e for e in self.events if e.is_error(self.family)]

    @property
    def has_done(self) -> bool:
        return any(e.is_done for e in self.events)

    def named(self, name: str) -> list[SSE]:
        return [e for e in self.events if e.event == name]


def raw_stream(
    router: RouterServer,
    family: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    stop_after_contents: int | None = None,
    timeout: float = CLIENT_TIMEOUT,
) -> RawStream:
    """POST a streaming request with httpx and read the answer event by event.

    With ``stop_after_contents`` the client closes the stream as soon as it has that many
    content events (``ended`` is then the moment the connection was closed).
    """
    body = body if body is not None else stream_body(family)
    started = time.monotonic()
    with (
        httpx.Client(timeout=httpx.Timeout(timeout)) as client,
        client.stream("POST", router.url + path, json=body) as resp,
    ):
        result = RawStream(family, resp.status_code, resp.headers, started)
        splitter = SSESplitter()
        raw: list[bytes] = []
        try:
            for chunk in resp.iter_raw():
                raw.append(chunk)
                result.events.extend(splitter.feed(chunk))
                if stop_after_contents is not None and len(result.contents) >= stop_after_contents:
                    break
        except httpx.TransportError as exc:
            result.error = exc
        result.body = b"".join(raw).decode("utf-8", errors="replace")
    result.ended = time.monotonic()
    return result


# --------------------------------------------------------------------------- /health


def provider_health(router: RouterServer, family: str, name: str) -> dict[str, Any]:
    """The /health row of one provider."""
    resp = httpx.get(f"{router.url}/health", timeout=CLIENT_TIMEOUT)
    assert resp.status_code == 200, resp.text
    for row in resp.json()["providers"][family]:
        if row["name"] == name:
            return dict(row)
    raise AssertionError(f"no provider {name!r} in /health: {resp.text}")


# --------------------------------------------------------------------------- SDKs


def openai_client(router: RouterServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{router.url}/openai",
        api_key="client-key",
        max_retries=0,
        timeout=CLIENT_TIMEOUT,
    )


def anthropic_client(router: RouterServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{router.url}/anthropic",
        api_key="client-key",
        max_retries=0,
        timeout=CLIENT_TIMEOUT,
    )


@dataclass
class Timed:
    """Text pieces received by an SDK, with their arrival times."""

    started: float = field(default_factory=time.monotonic)
    pieces: list[tuple[float, str]] = field(default_factory=list)
    ended: float = 0.0

    def add(self, text: str | None) -> None:
        if text:
            self.pieces.append((time.monotonic(), text))

    @property
    def text(self) -> str:
        return "".join(p for _, p in self.pieces)

    @property
    def elapsed(self) -> float:
        return self.ended - self.started


def consume_openai(chunks: Iterable[Any], into: Timed) -> None:
    """Iterate an OpenAI SDK stream to its end, recording content (``ended`` set either way)."""
    try:
        for chunk in chunks:
            for choice in chunk.choices:
                into.add(choice.delta.content)
    finally:
        into.ended = time.monotonic()


def consume_anthropic_events(events: Iterable[Any], into: Timed) -> None:
    """Iterate raw Anthropic stream events (``messages.create(stream=True)``)."""
    try:
        for event in events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                into.add(event.delta.text)
    finally:
        into.ended = time.monotonic()


def consume_anthropic_text(text_stream: Iterator[str], into: Timed) -> None:
    """Iterate ``MessageStream.text_stream``."""
    try:
        for text in text_stream:
            into.add(text)
    finally:
        into.ended = time.monotonic()
