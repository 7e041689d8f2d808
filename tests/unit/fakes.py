"""In-process fakes for unit tests: a scripted Transport and a manual clock."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_api_router.errors import UpstreamTransportError
from llm_api_router.upstream import UpstreamResponse


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Canned:
    """One scripted answer: a status with a body, or a list of body chunks, or an error."""

    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: list[bytes | UpstreamTransportError] | None = None
    error: UpstreamTransportError | None = None


@dataclass
class Sent:
    url: str
    headers: dict[str, str]
    body: bytes
    timeout: float
    method: str = "POST"


class _Response:
    def __init__(self, canned: Canned) -> None:
        self._canned = canned
        self._chunks: deque[bytes | UpstreamTransportError] = deque(
            canned.chunks if canned.chunks is not None else [canned.body]
        )
        self.closed = False
        self.released = False  # given back after a complete body (implies closed)
        self.wait_limit: float | None = None

    @property
    def status(self) -> int:
        return self._canned.status

    @property
    def headers(self) -> Mapping[str, str]:
        return {k.lower(): v for k, v in self._canned.headers.items()}

    async def read(self) -> bytes:
        parts = []
        while self._chunks:
            part = self._chunks.popleft()
            if isinstance(part, UpstreamTransportError):
                raise part
            parts.append(part)
        return b"".join(parts)

    async def next_chunk(self) -> bytes:
        if not self._chunks:
            return b""
        part = self._chunks.popleft()
        if isinstance(part, UpstreamTransportError):
            raise part
        return part

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.closed = self.released = True

    def limit_wait(self, seconds: float) -> None:
        self.wait_limit = seconds


class ScriptedTransport:
    """Answers by URL prefix from per-prefix queues; records every request."""

    def __init__(self) -> None:
        self._scripts: dict[str, deque[Canned]] = defaultdict(deque)
        self.sent: list[Sent] = []
        self.responses: list[_Response] = []

    def script(self, prefix: str, *answers: Canned) -> None:
        self._scripts[prefix].extend(answers)

    async def request(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float,
        method: str = "POST",
    ) -> UpstreamResponse:
        self.sent.append(Sent(url, dict(headers), body, timeout, method))
        for prefix, queue in self._scripts.items():
            if url.startswith(prefix) and queue:
                canned = queue.popleft()
                break
        else:
            canned = Canned()
        if canned.error is not None:
            raise canned.error
        response = _Response(canned)
        self.responses.append(response)
        return response

    async def aclose(self) -> None:
        pass

    def hosts(self) -> list[str]:
        return [s.url.split("/")[2] for s in self.sent]
