"""Router keys on the real server: who may call /openai and /anthropic, and what goes upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_api_router.fake_upstream import FakeUpstreamThread
from tests.conftest import StartRouter
from tests.routerserver import RouterServer

ROUTER_KEY = "rk-auth-test-router-key-0123456789"
SECOND_KEY = "rk-auth-test-second-key-abcdefghij"
OPENAI_KEY = "sk-auth-test-openai-provider-key-000"
ANTHROPIC_KEY = "sk-ant-auth-test-anthropic-provider-key-111"

Provider = Callable[..., dict[str, Any]]

OPENAI_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {
    "model": "claude-x",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "hi"}],
}

ROUTES = [
    ("openai", "/openai/chat/completions"),
    ("openai", "/openai/v1/chat/completions"),
    ("anthropic", "/anthropic/chat/completions"),
    ("anthropic", "/anthropic/v1/messages"),
]


def body_for(family: str) -> dict[str, Any]:
    return OPENAI_BODY if family == "openai" else ANTHROPIC_BODY


@pytest.fixture(scope="module")
def shared_router(fake_upstream: FakeUpstreamThread) -> Iterator[RouterServer]:
    """One router for the module (starting one per test costs more than the tests)."""

    def entry(name: str, family: str, key: str) -> dict[str, Any]:
        return {"name": name, "api_key": key, "base_url": fake_upstream.base_url(name, family)}

    config = {
        "openai": [entry("oa", "openai", OPENAI_KEY)],
        "anthropic": [entry("an", "anthropic", ANTHROPIC_KEY)],
        "auth": {"api_keys": [ROUTER_KEY, SECOND_KEY]},
    }
    with RouterServer(config) as server:
        yield server


class Api:
    """A router plus the client that talks to it."""

    def __init__(self, server: RouterServer, http: httpx.Client) -> None:
        self.server = server
        self.url = server.url
        self.http = http

    def post(self, path: str, body: Any = None, headers: Any = None) -> httpx.Response:
        url = self.url + path
        if body is None or isinstance(body, bytes):
            return self.http.post(url, content=body or b"", headers=headers or {})
        return self.http.post(url, json=body, headers=headers or {})

    def get(self, path: str) -> httpx.Response:
        return self.http.get(self.url + path)


@pytest.fixture
def router(fake: FakeUpstreamThread, shared_router: Api, http: httpx.Client) -> Api:
    return Api(shared_router, http)


def assert_native_401(family: str, response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    if family == "openai":
        assert set(data) == {"error"}
        error = data["error"]
        assert error["code"] == "invalid_api_key"
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str) and error["type"]
    else:
        assert data["type"] == "error"
        assert data["error"]["type"] == "authentication_error"
        assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    for secret in (ROUTER_KEY, SECOND_KEY, OPENAI_KEY, ANTHROPIC_KEY):
        assert secret not in response.text
        assert secret not in str(response.headers)


# -- rejected --------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "path"), ROUTES)
def test_missing_key_is_401_in_native_format(
    fake: FakeUpstreamThread, router: Api, family: str, path: str
) -> None:
    response = router.post(path, body_for(family))
    assert_native_401(family, response)
    assert fake.requests() == []


WRONG_KEYS = [
    "rk-something-else",
    ROUTER_KEY[:-1],  # a prefix of the right key
    ROUTER_KEY[:8],
    ROUTER_KEY[:-1] + "X",  # same length, last character wrong
    "X" + ROUTER_KEY[1:],  # same length, first character wrong
    ROUTER_KEY + "0",  # the right key plus one character
    ROUTER_KEY.upper(),
    OPENAI_KEY,  # a provider key is not a router key
    f"{ROUTER_KEY},{SECOND_KEY}",
]


@pytest.mark.parametrize("family", ["openai", "anthropic"])
@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_wrong_keys_are_401(fake: FakeUpstreamThread, router: Api, family: str, style: str) -> None:
    path = ROUTES[0][1] if family == "openai" else ROUTES[3][1]
    for wrong in WRONG_KEYS:
        header = {"authorization": f"Bearer {wrong}"} if style == "bearer" else {"x-api-key": wrong}
        response = router.post(path, body_for(family), header)
        assert_native_401(family, response)
    assert fake.requests() == []


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": ROUTER_KEY},  # no scheme
        {"authorization": f"Basic {ROUTER_KEY}"},
        {"authorization": "Bearer"},
        {"x-api-key": ""},
        {"api-key": ROUTER_KEY},  # Azure's header is not one of ours
        {"cookie": f"key={ROUTER_KEY}"},
    ],
)
def test_other_ways_of_presenting_a_key_are_401(
    fake: FakeUpstreamThread, router: Api, headers: dict[str, str]
) -> None:
    assert_native_401("openai", router.post("/openai/chat/completions", OPENAI_BODY, headers))
    assert fake.requests() == []


def test_non_ascii_key_is_401_not_a_crash(fake: FakeUpstreamThread, router: Api) -> None:
    response = router.post(
        "/anthropic/v1/messages",
        ANTHROPIC_BODY,
        [(b"x-api-key", b"\xff\xfe-caf\xe9"), (b"authorization", b"Bearer \xe9t\xe9")],
    )
    assert_native_401("anthropic", response)


def test_key_is_checked_before_the_body(fake: FakeUpstreamThread, router: Api) -> None:
    """Without a key nothing about the request is looked at: no 400/413/415 hints."""
    cases: list[tuple[bytes, dict[str, str]]] = [
        (b"{not json", {"content-type": "application/json"}),
        (b"{}", {"content-type": "application/json"}),
        (b"hello", {"content-type": "text/plain"}),
        (b"x" * 100_000, {"content-type": "application/json"}),
    ]
    for content, headers in cases:
        assert_native_401("openai", router.post("/openai/chat/completions", content, headers))
        assert_native_401("anthropic", router.post("/anthropic/v1/messages", content, headers))
    assert fake.requests() == []


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_stream_request_without_key_gets_a_json_401(
    fake: FakeUpstreamThread, router: Api, family: str
) -> None:
    path = "/openai/chat/completions" if family == "openai" else "/anthropic/v1/messages"
    response = router.post(path, {**body_for(family), "stream": True})
    assert_native_401(family, response)
    assert fake.requests() == []


def test_401_carries_request_id_and_no_provider(router: Api) -> None:
    response = router.post(
        "/openai/chat/completions", OPENAI_BODY, {"x-request-id": "client-req-401"}
    )
    assert response.status_code == 401
    assert response.headers["x-router-request-id"] == "client-req-401"
    assert "x-router-provider" not in response.headers


def test_rejected_requests_do_not_touch_provider_health(router: Api) -> None:
    for _ in range(10):
        assert router.post("/openai/chat/completions", OPENAI_BODY).status_code == 401
    health = router.get("/health").json()
    for rows in health["providers"].values():
        for row in rows:
            assert row["state"] == "healthy"
            assert row["recent_failures"] == 0


# -- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "path"), ROUTES)
@pytest.mark.parametrize("style", ["bearer", "x-api-key", "lowercase-bearer"])
def test_right_key_is_accepted_and_never_forwarded(
    fake: FakeUpstreamThread, router: Api, family: str, path: str, style: str
) -> None:
    headers = {
        "bearer": {"authorization": f"Bearer {ROUTER_KEY}"},
        "x-api-key": {"x-api-key": ROUTER_KEY},
        "lowercase-bearer": {"authorization": f"bearer {ROUTER_KEY}"},
    }[style]
    response = router.post(path, body_for(family), headers)
    assert response.status_code == 200, response.text
    name = "oa" if family == "openai" else "an"
    assert response.headers["x-router-provider"] == name
    (seen,) = fake.requests(name)
    if family == "openai":
        assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert "x-api-key" not in seen.headers
    else:
        assert seen.headers["x-api-key"] == ANTHROPIC_KEY
        assert "authorization" not in seen.headers
    everything = repr(seen.headers) + seen.body.decode() + seen.query + seen.path
    assert ROUTER_KEY not in everything
    assert ROUTER_KEY not in response.text


def test_every_configured_key_is_accepted(router: Api) -> None:
    for key in (ROUTER_KEY, SECOND_KEY):
        response = router.post("/openai/chat/completions", OPENAI_BODY, {"x-api-key": key})
        assert response.status_code == 200


def test_a_right_key_with_a_wrong_one_in_the_other_header(router: Api) -> None:
    headers = {"x-api-key": "wrong-key", "authorization": f"Bearer {ROUTER_KEY}"}
    assert router.post("/openai/chat/completions", OPENAI_BODY, headers).status_code == 200


def test_client_credentials_are_not_forwarded_without_router_keys(
    fake: FakeUpstreamThread,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
) -> None:
    router = Api(
        start_router(
            {
                "openai": [provider("oa", api_key=OPENAI_KEY)],
                "anthropic": [provider("an", "anthropic", api_key=ANTHROPIC_KEY)],
            }
        ),
        http,
    )
    client_headers = {
        "authorization": "Bearer client-own-secret-1",
        "x-api-key": "client-own-secret-2",
        "api-key": "client-own-secret-3",
    }
    assert router.post("/openai/chat/completions", OPENAI_BODY, client_headers).is_success
    assert router.post("/anthropic/v1/messages", ANTHROPIC_BODY, client_headers).is_success
    for seen in fake.requests():
        dumped = repr(seen.headers)
        assert "client-own-secret" not in dumped
    (oa,) = fake.requests("oa")
    (an,) = fake.requests("an")
    assert oa.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert an.headers["x-api-key"] == ANTHROPIC_KEY


def test_streams_work_with_the_key(fake: FakeUpstreamThread, router: Api) -> None:
    for family, path in (ROUTES[0], ROUTES[3]):
        response = router.post(
            path, {**body_for(family), "stream": True}, {"x-api-key": ROUTER_KEY}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert ("[DONE]" if family == "openai" else "message_stop") in response.text
    for seen in fake.requests():
        assert ROUTER_KEY not in repr(seen.headers)


# -- keys from the environment and ${VAR} ----------------------------------------------------


def test_keys_from_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
) -> None:
    monkeypatch.setenv("LLM_ROUTER_API_KEYS", " env-key-one-123456 ,env-key-two-654321,, ")
    router = Api(
        start_router({"openai": [provider("oa")], "auth": {"api_keys": [ROUTER_KEY]}}), http
    )
    path = "/openai/chat/completions"
    for key in ("env-key-one-123456", "env-key-two-654321", ROUTER_KEY):
        assert router.post(path, OPENAI_BODY, {"x-api-key": key}).status_code == 200, key
        headers = {"authorization": f"Bearer {key}"}
        assert router.post(path, OPENAI_BODY, headers).status_code == 200, key
    assert_native_401("openai", router.post(path, OPENAI_BODY))
    for wrong in ("env-key-one-123456,env-key-two-654321", "env-key-one", ""):
        assert router.post(path, OPENAI_BODY, {"x-api-key": wrong}).status_code == 401


def test_environment_keys_alone_enable_auth(
    monkeypatch: pytest.MonkeyPatch,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
) -> None:
    monkeypatch.setenv("LLM_ROUTER_API_KEYS", "only-env-key-abcdef")
    router = Api(start_router({"anthropic": [provider("an", "anthropic")]}), http)
    path = "/anthropic/v1/messages"
    assert_native_401("anthropic", router.post(path, ANTHROPIC_BODY))
    response = router.post(path, ANTHROPIC_BODY, {"x-api-key": "only-env-key-abcdef"})
    assert response.status_code == 200


def test_empty_environment_variable_leaves_the_api_open(
    monkeypatch: pytest.MonkeyPatch,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
) -> None:
    monkeypatch.setenv("LLM_ROUTER_API_KEYS", " , ")
    router = Api(start_router({"openai": [provider("oa")]}), http)
    assert router.post("/openai/chat/completions", OPENAI_BODY).status_code == 200


def test_key_from_variable_in_config(
    monkeypatch: pytest.MonkeyPatch,
    start_router: StartRouter,
    provider: Provider,
    http: httpx.Client,
) -> None:
    monkeypatch.delenv("LLM_ROUTER_API_KEYS", raising=False)
    monkeypatch.setenv("TEST_AUTH_ROUTER_KEY", "from-var-key-987654")
    router = Api(
        start_router(
            {"openai": [provider("oa")], "auth": {"api_keys": ["${TEST_AUTH_ROUTER_KEY}"]}}
        ),
        http,
    )
    path = "/openai/chat/completions"
    assert router.post(path, OPENAI_BODY, {"x-api-key": "from-var-key-987654"}).is_success
    response = router.post(path, OPENAI_BODY, {"x-api-key": "${TEST_AUTH_ROUTER_KEY}"})
    assert response.status_code == 401


# -- open routes -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/health", "/metrics"])
def test_info_routes_are_open_and_show_no_secret(router: Api, path: str) -> None:
    # Some traffic first, so that /metrics and /health have something to show.
    router.post("/openai/chat/completions", OPENAI_BODY, {"x-api-key": ROUTER_KEY})
    router.post("/openai/chat/completions", OPENAI_BODY, {"x-api-key": "wrong"})
    response = router.get(path)
    assert response.status_code == 200
    text = response.text + str(response.headers)
    for secret in (ROUTER_KEY, SECOND_KEY, OPENAI_KEY, ANTHROPIC_KEY):
        assert secret not in text


# -- the official SDKs -----------------------------------------------------------------------


def test_openai_sdk_with_router_key(fake: FakeUpstreamThread, router: Api) -> None:
    with openai.OpenAI(
        base_url=f"{router.url}/openai", api_key=ROUTER_KEY, max_retries=0
    ) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    assert completion.choices[0].message.content == "Hello from oa"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from oa"
    for seen in fake.requests("oa"):
        assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_openai_sdk_with_wrong_key(fake: FakeUpstreamThread, router: Api) -> None:
    with openai.OpenAI(
        base_url=f"{router.url}/openai", api_key="rk-wrong-key", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert fake.requests() == []


def test_anthropic_sdk_with_router_key(fake: FakeUpstreamThread, router: Api) -> None:
    with anthropic.Anthropic(
        base_url=f"{router.url}/anthropic", api_key=ROUTER_KEY, max_retries=0
    ) as client:
        message = client.messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        with client.messages.stream(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = stream.get_final_text()
    assert message.content[0].text == "Hello from an"  # type: ignore[union-attr]
    assert text == "Hello from an"
    for seen in fake.requests("an"):
        assert seen.headers["x-api-key"] == ANTHROPIC_KEY


def test_anthropic_sdk_with_wrong_key(fake: FakeUpstreamThread, router: Api) -> None:
    with anthropic.Anthropic(
        base_url=f"{router.url}/anthropic", api_key="rk-wrong-key", max_retries=0
    ) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(
                model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        with (
            pytest.raises(anthropic.AuthenticationError),
            client.messages.stream(
                model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            ) as stream,
        ):
            stream.get_final_text()
    assert caught.value.status_code == 401
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "authentication_error"
    assert fake.requests() == []
