"""SPEC section 6: bad input gets a native 4xx that says what is wrong, and goes nowhere.

One router (both families, a small body limit) serves the whole module; every test checks
the status, the family's native error shape, the message, and that the fake upstream
received nothing.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_api_router.fake_upstream import FakeUpstreamThread
from tests.conftest import StartRouter
from tests.routerserver import RouterServer

MAX_BODY = 1000
TLS = ssl.create_default_context()  # shared: one per client would load the CA bundle each time

ROUTES = [
    ("openai", "/openai/chat/completions"),
    ("openai", "/openai/v1/chat/completions"),
    ("anthropic", "/anthropic/chat/completions"),
    ("anthropic", "/anthropic/v1/messages"),
]
ROUTE_IDS = [path for _, path in ROUTES]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-x"}


def good_body(family: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODELS[family],
        "messages": [{"role": "user", "content": "hi"}],
    }
    if family == "anthropic":
        body["max_tokens"] = 10
    body.update(changes)
    return body


def without(family: str, field: str) -> dict[str, Any]:
    body = good_body(family)
    del body[field]
    return body


@pytest.fixture(scope="module")
def router(fake_upstream: FakeUpstreamThread) -> Iterator[RouterServer]:
    config = {
        "openai": [
            {
                "name": "oa",
                "api_key": "sk-test-oa-secret",
                "base_url": fake_upstream.base_url("oa", "openai"),
            }
        ],
        "anthropic": [
            {
                "name": "an",
                "api_key": "sk-test-an-secret",
                "base_url": fake_upstream.base_url("an", "anthropic"),
            }
        ],
        "settings": {"max_body_bytes": MAX_BODY},
    }
    with RouterServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def roomy_router(fake_upstream: FakeUpstreamThread) -> Iterator[RouterServer]:
    """Both families with the default body limit (32 MiB)."""
    config = {
        "openai": [
            {
                "name": "oa",
                "api_key": "sk-test-oa-secret",
                "base_url": fake_upstream.base_url("oa", "openai"),
            }
        ],
        "anthropic": [
            {
                "name": "an",
                "api_key": "sk-test-an-secret",
                "base_url": fake_upstream.base_url("an", "anthropic"),
            }
        ],
    }
    with RouterServer(config) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20, verify=TLS) as client:
        yield client


def check_native_error(family: str, response: httpx.Response, status: int) -> str:
    """Assert status and the family's native error shape; return the message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if family == "openai":
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) >= {"message", "type", "param", "code"}, body
        assert isinstance(error["type"], str) and error["type"], body
    else:
        assert body.get("type") == "error", body
        error = body["error"]
        assert set(error) >= {"type", "message"}, body
        assert isinstance(error["type"], str) and error["type"], body
    message = error["message"]
    assert isinstance(message, str) and message.strip(), body
    assert "Traceback" not in response.text
    assert "sk-test" not in response.text
    return message


def says(message: str, *words: str) -> None:
    lowered = message.lower()
    assert any(word.lower() in lowered for word in words), (message, words)


# --------------------------------------------------------------------------- body cases

# (id, body maker, words the message must contain one of); the maker gets the family.
BodyMaker = Callable[[str], bytes]


def as_json(make: Callable[[str], Any]) -> BodyMaker:
    return lambda family: json.dumps(make(family)).encode()


COMMON_CASES: list[tuple[str, BodyMaker, tuple[str, ...]]] = [
    ("not-json", lambda f: b"{this is not json", ("json",)),
    ("not-json-form", lambda f: b"model=gpt-4o-mini&messages=hi", ("json",)),
    ("truncated-json", lambda f: b'{"model": "x", "messages": [', ("json",)),
    ("empty", lambda f: b"", ("empty", "json")),
    ("whitespace", lambda f: b"  \n\t ", ("empty", "json")),
    ("array", lambda f: b'[{"model": "x", "messages": []}]', ("object", "array")),
    ("string", lambda f: b'"hello"', ("object", "string")),
    ("number", lambda f: b"42", ("object", "number")),
    ("null", lambda f: b"null", ("object", "null")),
    ("boolean", lambda f: b"true", ("object", "boolean")),
    ("invalid-utf8", lambda f: b'{"model": "\xff\xfe\xfd", "messages": []}', ("json", "utf")),
    ("missing-model", as_json(lambda f: without(f, "model")), ("model",)),
    ("missing-messages", as_json(lambda f: without(f, "messages")), ("messages",)),
    ("model-number", as_json(lambda f: good_body(f, model=42)), ("model",)),
    ("model-null", as_json(lambda f: good_body(f, model=None)), ("model",)),
    ("model-array", as_json(lambda f: good_body(f, model=["gpt-4o"])), ("model",)),
    ("messages-string", as_json(lambda f: good_body(f, messages="hello")), ("messages",)),
    ("messages-object", as_json(lambda f: good_body(f, messages={"a": 1})), ("messages",)),
    ("messages-null", as_json(lambda f: good_body(f, messages=None)), ("messages",)),
    ("stream-string", as_json(lambda f: good_body(f, stream="yes")), ("stream",)),
    ("stream-number", as_json(lambda f: good_body(f, stream=1)), ("stream",)),
]
# Nested far deeper than any parser's recursion limit (sent to a router with the default
# body limit, so that they reach the JSON parser).
DEEP_CASES: list[tuple[str, BodyMaker, tuple[str, ...]]] = [
    ("deep-array", lambda f: b"[" * 10000 + b"]" * 10000, ("json", "object", "deep")),
    (
        "deep-object",
        lambda f: b'{"a":' * 10000 + b"1" + b"}" * 10000,
        ("json", "model", "deep", "nest"),
    ),
]
ANTHROPIC_CASES: list[tuple[str, BodyMaker, tuple[str, ...]]] = [
    ("missing-max_tokens", as_json(lambda f: without(f, "max_tokens")), ("max_tokens",)),
    ("max_tokens-string", as_json(lambda f: good_body(f, max_tokens="10")), ("max_tokens",)),
    ("max_tokens-zero", as_json(lambda f: good_body(f, max_tokens=0)), ("max_tokens",)),
    ("max_tokens-negative", as_json(lambda f: good_body(f, max_tokens=-1)), ("max_tokens",)),
    ("max_tokens-true", as_json(lambda f: good_body(f, max_tokens=True)), ("max_tokens",)),
    ("max_tokens-float", as_json(lambda f: good_body(f, max_tokens=1.5)), ("max_tokens",)),
    ("max_tokens-null", as_json(lambda f: good_body(f, max_tokens=None)), ("max_tokens",)),
]

BODY_CASES = [
    pytest.param(family, path, make, words, id=f"{path}-{case_id}")
    for family, path in ROUTES
    for case_id, make, words in COMMON_CASES + (ANTHROPIC_CASES if family == "anthropic" else [])
]


@pytest.mark.parametrize(("family", "path", "make", "words"), BODY_CASES)
def test_bad_body_is_a_native_400(
    router: RouterServer,
    fake: FakeUpstreamThread,
    http: httpx.Client,
    family: str,
    path: str,
    make: BodyMaker,
    words: tuple[str, ...],
) -> None:
    response = http.post(
        router.url + path, content=make(family), headers={"content-type": "application/json"}
    )
    message = check_native_error(family, response, 400)
    says(message, *words)
    assert fake.requests() == []


DEEP_PARAMS = [
    pytest.param(family, path, make, words, id=f"{path}-{case_id}")
    for family, path in ROUTES
    for case_id, make, words in DEEP_CASES
]


@pytest.mark.parametrize(("family", "path", "make", "words"), DEEP_PARAMS)
def test_deeply_nested_json_is_a_native_400(
    roomy_router: RouterServer,
    fake: FakeUpstreamThread,
    http: httpx.Client,
    family: str,
    path: str,
    make: BodyMaker,
    words: tuple[str, ...],
) -> None:
    response = http.post(
        roomy_router.url + path,
        content=make(family),
        headers={"content-type": "application/json"},
    )
    message = check_native_error(family, response, 400)
    says(message, *words)
    assert fake.requests() == []


@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_good_body_control_is_accepted(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str, path: str
) -> None:
    """The positive control: the same router accepts a valid request on every route."""
    response = http.post(
        router.url + path,
        content=json.dumps(good_body(family)).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    assert len(fake.requests()) == 1


# --------------------------------------------------------------------------- size


@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_body_over_the_limit_with_content_length_is_413(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str, path: str
) -> None:
    body = good_body(family, padding="x" * (2 * MAX_BODY))
    response = http.post(
        router.url + path,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    message = check_native_error(family, response, 413)
    says(message, "large", "limit", "size", "bytes")
    assert fake.requests() == []


@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_body_over_the_limit_chunked_is_413(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str, path: str
) -> None:
    encoded = json.dumps(good_body(family, padding="x" * (5 * MAX_BODY))).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(encoded), 200):
            yield encoded[start : start + 200]

    request = http.build_request(
        "POST", router.url + path, content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = http.send(request)
    message = check_native_error(family, response, 413)
    says(message, "large", "limit", "size", "bytes")
    assert fake.requests() == []


@pytest.mark.parametrize(("family", "path"), [ROUTES[0], ROUTES[3]], ids=ROUTE_IDS[::3])
def test_default_body_limit_is_32_mib(
    roomy_router: RouterServer,
    fake: FakeUpstreamThread,
    http: httpx.Client,
    family: str,
    path: str,
) -> None:
    body = good_body(family, padding="")
    overhead = len(json.dumps(body).encode())
    body["padding"] = "x" * (32 * 1024 * 1024 - overhead + 1)
    encoded = json.dumps(body).encode()
    assert len(encoded) == 32 * 1024 * 1024 + 1
    response = http.post(
        roomy_router.url + path, content=encoded, headers={"content-type": "application/json"}
    )
    message = check_native_error(family, response, 413)
    says(message, "large", "limit", "size", "bytes")
    assert fake.requests() == []


@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_body_just_under_the_limit_is_accepted(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str, path: str
) -> None:
    body = good_body(family, padding="")
    size = len(json.dumps(body).encode())
    body["padding"] = "x" * (MAX_BODY - size - 10)
    encoded = json.dumps(body).encode()
    assert MAX_BODY - 20 < len(encoded) <= MAX_BODY
    response = http.post(
        router.url + path, content=encoded, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    (request,) = fake.requests()
    assert request.body == encoded


# --------------------------------------------------------------------------- content type


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_wrong_content_type_is_415(
    router: RouterServer,
    fake: FakeUpstreamThread,
    http: httpx.Client,
    family: str,
    path: str,
    content_type: str,
) -> None:
    response = http.post(
        router.url + path,
        content=json.dumps(good_body(family)).encode(),
        headers={"content-type": content_type},
    )
    message = check_native_error(family, response, 415)
    says(message, "content type", "content-type", "application/json")
    assert fake.requests() == []


@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_gzip_content_encoding_is_415(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str, path: str
) -> None:
    response = http.post(
        router.url + path,
        content=gzip.compress(json.dumps(good_body(family)).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    message = check_native_error(family, response, 415)
    says(message, "encoding", "gzip")
    assert fake.requests() == []


# --------------------------------------------------------------------------- method / path


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(("family", "path"), ROUTES, ids=ROUTE_IDS)
def test_other_methods_on_a_chat_path_reach_the_upstream(
    router: RouterServer,
    fake: FakeUpstreamThread,
    http: httpx.Client,
    family: str,
    path: str,
    method: str,
) -> None:
    # GET /v1/chat/completions lists stored completions upstream: the router never answers
    # its own 405/404 for a path the upstream API might know (SPEC section 9).
    response = http.request(method, router.url + path)
    (seen,) = fake.requests()
    assert seen.method == method
    assert seen.path.endswith("/chat/completions" if family == "openai" else "/v1/messages")
    assert response.headers["x-router-provider"] in ("oa", "an")
    assert response.status_code == 404  # the fake upstream's own answer, passed back


@pytest.mark.parametrize(
    ("family", "path", "upstream"),
    [
        ("openai", "/openai/v1/some/unknown/path", "/oa/v1/some/unknown/path"),
        ("openai", "/openai/fine_tuning/jobs", "/oa/v1/fine_tuning/jobs"),
        ("anthropic", "/anthropic/v1/complete", "/an/v1/complete"),
        ("anthropic", "/anthropic/organizations/me", "/an/v1/organizations/me"),
    ],
)
def test_unknown_path_under_a_family_reaches_the_upstream(
    router: RouterServer,
    fake: FakeUpstreamThread,
    http: httpx.Client,
    family: str,
    path: str,
    upstream: str,
) -> None:
    response = http.post(
        router.url + path + "?x=1", content=b"anything", headers={"content-type": "text/plain"}
    )
    (seen,) = fake.requests()
    assert (seen.method, seen.path, seen.query, seen.body) == ("POST", upstream, "x=1", b"anything")
    assert seen.headers.get("content-type") == "text/plain"
    assert response.status_code == 404  # the upstream's answer, as it is
    assert response.headers["x-router-provider"] == ("oa" if family == "openai" else "an")
    assert "invalid url" in response.text.lower() or "not_found_error" in response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(("family", "path"), [("openai", "/openai"), ("anthropic", "/anthropic")])
def test_a_family_root_is_a_native_404(
    router: RouterServer,
    fake: FakeUpstreamThread,
    http: httpx.Client,
    family: str,
    path: str,
    method: str,
) -> None:
    kwargs: dict[str, Any] = {}
    if method == "POST":
        kwargs = {"json": good_body(family)}
    response = http.request(method, router.url + path, **kwargs)
    message = check_native_error(family, response, 404)
    says(message, path, "route", "not found", "unknown")
    assert fake.requests() == []


# --------------------------------------------------------------------------- through the SDKs


def test_openai_sdk_gets_bad_request_error(router: RouterServer, fake: FakeUpstreamThread) -> None:
    with openai.OpenAI(
        base_url=f"{router.url}/openai",
        api_key="client-key",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(verify=TLS),
    ) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="gpt-4o-mini", messages="hello"  # type: ignore[arg-type]
            )
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model=42, messages=[{"role": "user", "content": "hi"}]  # type: ignore[arg-type]
            )
    assert "messages" in str(caught.value)
    assert fake.requests() == []


def test_anthropic_sdk_gets_bad_request_error(
    router: RouterServer, fake: FakeUpstreamThread
) -> None:
    with anthropic.Anthropic(
        base_url=f"{router.url}/anthropic",
        api_key="client-key",
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(verify=TLS),
    ) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(
                model="claude-x",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"max_tokens": "10"},
            )
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(
                model="claude-x", max_tokens=10, messages="hi"  # type: ignore[arg-type]
            )
    assert "max_tokens" in str(caught.value)
    assert fake.requests() == []


# --------------------------------------------------------------------------- burst


def _raw_socket(router: RouterServer, payload: bytes) -> None:
    """Send raw bytes, read whatever comes back, close (the server must survive it)."""
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as sock:
        sock.sendall(payload)
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)
        except OSError:
            pass


def test_server_survives_a_burst_of_bad_requests(
    roomy_router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    router = roomy_router
    bodies: list[tuple[str, bytes]] = []
    for family, path in ROUTES:
        for _, make, _ in COMMON_CASES + DEEP_CASES:
            bodies.append((path, make(family)))
    bodies.append(("/openai/chat/completions", b'{"model": "\xc3\x28", "messages": []}'))
    bodies.append(("/anthropic/v1/messages", b"\xff" * 500))
    bodies.append(("/openai/chat/completions", b"{" * 10000))
    bodies.append(("/anthropic/v1/messages", b'{"model":' * 10000))
    bodies.append(("/openai/v1/chat/completions", b'{"model": "m", "messages": ' + b"[" * 100000))
    assert len(bodies) >= 50

    def send(item: tuple[str, bytes]) -> int:
        path, content = item
        response = http.post(
            router.url + path, content=content, headers={"content-type": "application/json"}
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, bodies))
    assert all(400 <= status < 500 for status in statuses), statuses

    request_head = f"/openai/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{router.port}\r\n"
    _raw_socket(router, b"GARBAGE \x00\xff NOT HTTP\r\n\r\n")
    _raw_socket(
        router,
        b"POST " + request_head.encode() + b"Content-Type: application/json\r\n"
        b'Content-Length: 500\r\n\r\n{"model": ',
    )
    _raw_socket(
        router,
        b"POST " + request_head.encode() + b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nnot-hex\r\n",
    )
    assert fake.requests() == []

    for family, path in ROUTES:
        response = http.post(router.url + path, json=good_body(family))
        assert response.status_code == 200, response.text
    assert len(fake.requests()) == len(ROUTES)


# --------------------------------------------------------------------------- no provider


@pytest.mark.parametrize(
    ("configured", "missing", "env_var"),
    [("openai", "anthropic", "ANTHROPIC_API_KEY"), ("anthropic", "openai", "OPENAI_API_KEY")],
)
def test_family_without_provider_is_a_native_503(
    fake: FakeUpstreamThread, http: httpx.Client, configured: str, missing: str, env_var: str
) -> None:
    config = {
        configured: [
            {"name": "p", "api_key": "sk-test-p-secret", "base_url": fake.base_url("p", configured)}
        ]
    }
    with RouterServer(config) as router:
        for path in [p for f, p in ROUTES if f == missing]:
            response = http.post(router.url + path, json=good_body(missing))
            message = check_native_error(missing, response, 503)
            says(message, env_var)
            says(message, "config")
        # The configured family still works.
        path = next(p for f, p in ROUTES if f == configured)
        assert http.post(router.url + path, json=good_body(configured)).status_code == 200
    assert [r.provider for r in fake.requests()] == ["p"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_routers_own_404_has_the_familys_not_found_shape(
    router: RouterServer, http: httpx.Client, method: str
) -> None:
    """Where the router itself answers 404 under a family (paths below it go upstream):
    OpenAI invalid_request_error, code null, "Invalid URL (...)"; Anthropic not_found_error.

    ``model_not_found`` is only for an unknown model."""
    response = http.request(method, router.url + "/openai")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": f"Invalid URL ({method} /openai)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    response = http.request(method, router.url + "/anthropic")
    assert response.status_code == 404
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert f"{method} /anthropic" in body["error"]["message"]


def test_unknown_model_keeps_model_not_found(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Callable[..., dict[str, Any]],
    http: httpx.Client,
) -> None:
    router = start_router({"openai": [provider("a", models=["m1"])]})
    response = http.post(
        router.url + "/openai/chat/completions",
        json={"model": "other", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
