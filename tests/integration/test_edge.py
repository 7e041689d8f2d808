"""The HTTP edge (serve.py), driven with raw sockets: size limits, slow and idle sockets,
the connection limit, HEAD, trailing slashes, unparsable requests and Upgrade.

Every answer is JSON (the family's native error under /openai and /anthropic) and arrives
at once; no slow or oversized client holds the router or makes /health wait.  Time bounds
here only prove "not stalled" / "closed by the timeout, not by the test", never speed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from typing import Any

import httpx
import pytest

from llm_api_router.fake_upstream import FakeUpstreamThread
from llm_api_router.headers import MAX_FORWARDED_HEADERS
from llm_api_router.serve import MAX_HEADER_COUNT
from tests.routerserver import RouterServer

NOT_STALLED = 2.0  # seconds: generous bound for "answered at once"
TIMEOUT = 0.5  # the edge timeouts of the `slow` router
OPENAI_PATH = "/openai/chat/completions"
ANTHROPIC_PATH = "/anthropic/v1/messages"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def connect(router: RouterServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", router.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (to the end of its content-length, or to EOF)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def closed_by_peer(sock: socket.socket) -> bool:
    """Reads until EOF (True) or the socket timeout (False)."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def request_bytes(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: router", *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def openai_error(body: bytes) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def anthropic_error(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    assert data["type"] == "error"
    assert set(data["error"]) == {"type", "message"}
    return dict(data["error"])


@pytest.fixture(scope="module")
def router(fake_upstream: FakeUpstreamThread) -> Iterator[RouterServer]:
    config = {
        "openai": [
            {
                "name": "edge-o",
                "api_key": "sk-test-edge-o",
                "base_url": fake_upstream.base_url("edge-o", "openai"),
            }
        ],
        "anthropic": [
            {
                "name": "edge-a",
                "api_key": "sk-test-edge-a",
                "base_url": fake_upstream.base_url("edge-a", "anthropic"),
            }
        ],
    }
    with RouterServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def slow(fake_upstream: FakeUpstreamThread) -> Iterator[RouterServer]:
    """A router with short edge timeouts and room for 8 connections."""
    config = {
        "openai": [
            {
                "name": "edge-slow",
                "api_key": "sk-test-edge-slow",
                "base_url": fake_upstream.base_url("edge-slow", "openai"),
            }
        ],
        "settings": {
            "header_timeout": TIMEOUT,
            "body_timeout": TIMEOUT,
            "keepalive_timeout": TIMEOUT,
        },
    }
    with RouterServer(config) as server:
        yield server


def health_while(router: RouterServer, work: Callable[[], Any]) -> tuple[Any, list[float]]:
    """Run ``work`` while a client polls /health; the result and each /health latency."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=10) as client:
            while not done.is_set() or not latencies:
                started = time.monotonic()
                assert client.get(router.url + "/health").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.01)

    with ThreadPoolExecutor(1) as pool:
        poller = pool.submit(poll)
        try:
            result = work()
        finally:
            done.set()
        poller.result(timeout=30)
    return result, latencies


# -- item 2: oversized request line and headers -----------------------------------------------


def send_endless(sock: socket.socket, start: bytes, total: int) -> threading.Thread:
    """Send ``start`` then filler bytes (no end of line) up to ``total``, in a thread."""

    def pump() -> None:
        filler = b"a" * 65536
        with suppress(OSError):
            sock.sendall(start)
            sent = len(start)
            while sent < total:
                sock.sendall(filler)
                sent += len(filler)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("start", "status", "shape"),
    [
        (b"POST " + OPENAI_PATH.encode() + b" HTTP/1.1\r\nHost: r\r\nX-Big: ", 431, "openai"),
        (b"GET /anthropic/v1/messages?q=", 414, "anthropic"),
        (b"GET /health?q=", 414, "router"),
        (b"GET /health HTTP/1.1\r\nX-Big: ", 431, "router"),
    ],
)
def test_oversized_head_is_answered_at_once_while_health_stays_fast(
    router: RouterServer, start: bytes, status: int, shape: str
) -> None:
    # 64 MB of one header (or URL) that never ends: the edge answers after its limit.
    sock = connect(router)
    with closing(sock):

        def oversized() -> tuple[int, dict[str, str], bytes, float]:
            started = time.monotonic()
            pump = send_endless(sock, start, 64 * 1024 * 1024)
            answer = read_response(sock)
            pump.join(30)
            return (*answer, time.monotonic() - started)

        (got, headers, body, elapsed), latencies = health_while(router, oversized)
    assert got == status
    assert elapsed < NOT_STALLED
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert max(latencies) < NOT_STALLED, latencies
    if shape == "openai":
        assert "larger than the limit" in openai_error(body)["message"]
    elif shape == "anthropic":
        assert "longer than the limit" in anthropic_error(body)["message"]
    else:
        assert "limit" in json.loads(body)["detail"]


def test_too_many_header_lines_is_431(router: RouterServer) -> None:
    headers = [f"X-H{i}: v" for i in range(MAX_HEADER_COUNT + 1)]
    with closing(connect(router)) as sock:
        sock.sendall(request_bytes("POST", OPENAI_PATH, *headers, body=json.dumps(BODY).encode()))
        status, _, body = read_response(sock)
    assert status == 431
    assert "header lines" in openai_error(body)["message"]


def test_a_head_just_under_the_limits_is_served(router: RouterServer) -> None:
    headers = [f"X-H{i}: {'v' * 400}" for i in range(MAX_FORWARDED_HEADERS - 2)]
    with closing(connect(router)) as sock:
        sock.sendall(request_bytes("GET", "/health?" + "q" * 15_000, *headers))
        status, _, body = read_response(sock)
    assert status == 200
    assert json.loads(body)["status"] == "ok"


@pytest.mark.parametrize(
    "headers",
    [
        {f"x-custom-{i}": "v" for i in range(MAX_FORWARDED_HEADERS + 1)},
        {"x-custom": "v" * 9000},
    ],
    ids=["too-many", "too-long"],
)
def test_what_would_be_forwarded_upstream_is_bounded(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, headers: dict[str, str]
) -> None:
    response = http.post(router.url + OPENAI_PATH, json=BODY, headers=headers)
    assert response.status_code == 431
    assert openai_error(response.content)["code"] == "request_header_fields_too_large"
    assert fake.requests("edge-o") == []


# -- item 3: slow and idle sockets, the connection limit --------------------------------------


def test_a_silent_connection_is_closed_after_header_timeout(slow: RouterServer) -> None:
    with closing(connect(slow)) as sock:
        started = time.monotonic()
        assert closed_by_peer(sock)
        assert time.monotonic() - started < TIMEOUT + NOT_STALLED


def test_slowloris_headers_get_408_within_header_timeout(slow: RouterServer) -> None:
    with closing(connect(slow)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: r\r\n")
        with suppress(OSError):
            for _ in range(int((TIMEOUT + NOT_STALLED) / 0.1)):
                sock.sendall(b"X")  # one byte of a header line at a time, never ending it
                time.sleep(0.1)
        status, _, body = read_response(sock)
        assert status == 408
        assert "did not arrive" in json.loads(body)["detail"]
        assert closed_by_peer(sock)
        assert time.monotonic() - started < TIMEOUT + NOT_STALLED + 1


def test_a_stalled_body_gets_a_native_408(slow: RouterServer, fake: FakeUpstreamThread) -> None:
    with closing(connect(slow)) as sock:
        started = time.monotonic()
        head = request_bytes("POST", OPENAI_PATH, "Content-Type: application/json")
        sock.sendall(head.replace(b"Content-Length: 0", b"Content-Length: 1000") + b'{"mod')
        status, _, body = read_response(sock)
        assert status == 408
        assert "request body sent nothing" in openai_error(body)["message"]
        assert closed_by_peer(sock)
        assert time.monotonic() - started < TIMEOUT + NOT_STALLED
    assert fake.requests("edge-slow") == []


def test_an_idle_keep_alive_connection_is_closed(slow: RouterServer) -> None:
    with closing(connect(slow)) as sock:
        sock.sendall(request_bytes("GET", "/health"))
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        assert closed_by_peer(sock)
        assert time.monotonic() - started < TIMEOUT + NOT_STALLED


def test_beyond_max_connections_new_ones_get_503_at_once(
    fake_upstream: FakeUpstreamThread, http: httpx.Client
) -> None:
    config = {"settings": {"max_connections": 5, "header_timeout": 30}}
    with RouterServer(config) as router:
        idle = [connect(router) for _ in range(5)]
        try:
            time.sleep(0.2)  # let the router accept all five
            with closing(connect(router)) as extra:
                started = time.monotonic()
                extra.sendall(request_bytes("GET", "/health"))
                status, _, body = read_response(extra)
                assert time.monotonic() - started < NOT_STALLED
            assert status == 503
            assert "too many open connections" in json.loads(body)["detail"]
        finally:
            for sock in idle:
                sock.close()
        # The slots come back as the idle sockets go.
        deadline = time.monotonic() + 5
        while True:
            try:
                if http.get(router.url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the router did not recover its slots"
            time.sleep(0.05)


# -- item 15: HEAD, trailing slashes, unparsable requests, Upgrade ------------------------------


@pytest.mark.parametrize("path", ["/health", "/", "/metrics", "/openapi.json", "/docs"])
def test_head_of_a_get_route_is_200_without_a_body(router: RouterServer, path: str) -> None:
    with closing(connect(router)) as sock:
        sock.sendall(request_bytes("HEAD", path) + request_bytes("GET", "/health"))
        status, headers, _ = read_response_head(sock)
        assert status == 200
        # The next response follows at once: the HEAD one had no body.
        status, _, body = read_response(sock)
        assert status == 200
        assert body.startswith(b'{"status":"ok"')
    assert int(headers["content-length"]) > 0


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1)
    lines = data.decode("latin-1").split("\r\n")[:-2]
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, b""


def test_head_of_a_chat_route_is_a_client_error(router: RouterServer, http: httpx.Client) -> None:
    response = http.head(router.url + OPENAI_PATH)
    assert 400 <= response.status_code < 500
    assert response.content == b""


@pytest.mark.parametrize("path", ["/health/", "/openai/chat/completions/", "/metrics/"])
def test_a_trailing_slash_never_redirects_to_the_host_header(
    router: RouterServer, path: str
) -> None:
    with closing(connect(router)) as sock:
        method = "POST" if path.startswith("/openai") else "GET"
        request = request_bytes(method, path).replace(b"Host: router", b"Host: evil.example")
        sock.sendall(request)
        status, headers, body = read_response(sock)
    assert status == 404
    assert "location" not in headers
    assert b"evil.example" not in body
    if path.startswith("/openai"):
        openai_error(body)


@pytest.mark.parametrize(
    ("path", "shape"), [("/openai/chat/completions", "openai"), ("/health", "router")]
)
def test_an_unparsable_request_gets_a_json_400(router: RouterServer, path: str, shape: str) -> None:
    with closing(connect(router)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: r\r\nContent-Length: x\r\n\r\n".encode())
        status, headers, body = read_response(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    if shape == "openai":
        assert "could not be parsed" in openai_error(body)["message"]
    else:
        assert "could not be parsed" in json.loads(body)["detail"]


@pytest.mark.parametrize(
    ("path", "check"), [(OPENAI_PATH, openai_error), (ANTHROPIC_PATH, anthropic_error)]
)
def test_upgrade_websocket_is_426_at_once_in_native_format(
    router: RouterServer,
    fake: FakeUpstreamThread,
    path: str,
    check: Callable[[bytes], dict[str, Any]],
) -> None:
    body = json.dumps(BODY).encode()
    with closing(connect(router)) as sock:
        started = time.monotonic()
        sock.sendall(
            request_bytes(
                "POST",
                path,
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                body=body,
            )
        )
        status, _, answer = read_response(sock)
        assert time.monotonic() - started < NOT_STALLED
    assert status == 426
    assert "Upgrade Required" in check(answer)["message"]
    assert fake.requests() == []
