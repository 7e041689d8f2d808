"""The server's own routes (/, /health, /metrics, /docs, /openapi.json) and the public
``create_app(RouterConfig...)`` API under more than one ASGI server."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from starlette.testclient import TestClient

from llm_api_router._version import __version__
from llm_api_router.config import RouterConfig
from llm_api_router.fake_upstream import Error, FakeUpstreamThread
from llm_api_router.server import create_app
from tests.routerserver import RouterServer

TLS = ssl.create_default_context()  # shared: one per client would load the CA bundle each time

CHAT_ROUTES = {
    "/openai/chat/completions": "openai",
    "/openai/v1/chat/completions": "openai",
    "/anthropic/chat/completions": "anthropic",
    "/anthropic/v1/messages": "anthropic",
}
KEYS = {
    "oa1": "sk-test-oa1-secret-value",
    "oa2": "sk-test-oa2-secret-value",
    "an1": "sk-ant-test-an1-secret-value",
    "an2": "sk-ant-test-an2-secret-value",
}


def config_for(fake: FakeUpstreamThread) -> dict[str, Any]:
    return {
        "openai": [
            {
                "name": "oa1",
                "api_key": KEYS["oa1"],
                "base_url": fake.base_url("oa1", "openai"),
                "priority": 1,
                "max_retries": 0,
            },
            {
                # no name: the default is "<family>-<index>"
                "api_key": KEYS["oa2"],
                "base_url": fake.base_url("oa2", "openai"),
                "priority": 5,
            },
        ],
        "anthropic": [
            {
                "name": "an1",
                "api_key": KEYS["an1"],
                "base_url": fake.base_url("an1", "anthropic"),
                "priority": 2,
            },
            {
                "name": "an2",
                "api_key": KEYS["an2"],
                "base_url": fake.base_url("an2", "anthropic"),
                "priority": 3,
            },
        ],
        "settings": {"retry_backoff_base": 0.01, "retry_backoff_max": 0.02},
    }


@pytest.fixture(scope="module")
def router(fake_upstream: FakeUpstreamThread) -> Iterator[RouterServer]:
    # The public API: RouterConfig.from_dict + create_app, served by uvicorn.
    with RouterServer(RouterConfig.from_dict(config_for(fake_upstream))) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20, verify=TLS) as client:
        yield client


def assert_no_secret(text: str) -> None:
    for key in KEYS.values():
        assert key not in text
    assert "secret-value" not in text


def provider_rows(health: dict[str, Any]) -> list[dict[str, Any]]:
    """Every provider row of a /health answer, whether grouped by family or listed."""
    providers = health["providers"]
    if isinstance(providers, dict):
        return [row for rows in providers.values() for row in rows]
    assert isinstance(providers, list)
    return providers


def good_body(family: str) -> dict[str, Any]:
    if family == "openai":
        return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


# --------------------------------------------------------------------------- GET /


def test_root_names_the_server_version_and_routes(router: RouterServer, http: httpx.Client) -> None:
    response = http.get(router.url + "/")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "llm-api-router"
    assert body["version"] == __version__
    routes_text = json.dumps(body["routes"])
    for route in [*CHAT_ROUTES, "/health"]:
        assert route in routes_text, route
    assert_no_secret(response.text)


# --------------------------------------------------------------------------- GET /health


def test_health_lists_every_provider_without_keys(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    response = http.get(router.url + "/health")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert_no_secret(response.text)
    rows = {(row["family"], row["name"]): row for row in provider_rows(response.json())}
    expected = {
        ("openai", "oa1"): 1,
        ("openai", "openai-1"): 5,
        ("anthropic", "an1"): 2,
        ("anthropic", "an2"): 3,
    }
    assert set(rows) == set(expected)
    for key, priority in expected.items():
        row = rows[key]
        assert row["priority"] == priority
        assert row["state"] in {"healthy", "cooling_down", "circuit_open", "half_open"}
        assert isinstance(row["cooldown_seconds_left"], int | float)
        assert isinstance(row["recent_failures"], int)
        assert "api_key" not in row


def test_health_shows_failures_and_cooldowns_without_keys(
    fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    with RouterServer(config_for(fake)) as router:
        fake.script("oa1", Error(500))
        fake.script("an1", Error(429, headers={"retry-after": "50"}))
        assert http.post(
            router.url + "/openai/chat/completions", json=good_body("openai")
        ).is_success
        assert http.post(
            router.url + "/anthropic/v1/messages", json=good_body("anthropic")
        ).is_success
        response = http.get(router.url + "/health")
    assert response.status_code == 200
    assert_no_secret(response.text)
    rows = {row["name"]: row for row in provider_rows(response.json())}
    assert rows["oa1"]["recent_failures"] >= 1
    assert rows["an1"]["state"] == "cooling_down"
    assert 45 < rows["an1"]["cooldown_seconds_left"] <= 50
    assert rows["an1"]["recent_failures"] >= 1
    assert rows["an2"]["state"] == "healthy"
    assert rows["an2"]["cooldown_seconds_left"] == 0
    assert rows["an2"]["recent_failures"] == 0


# --------------------------------------------------------------------------- docs / openapi


def test_docs_is_html(router: RouterServer, http: httpx.Client) -> None:
    response = http.get(router.url + "/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()
    assert "openapi.json" in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_router(
    router: RouterServer, http: httpx.Client, page: str
) -> None:
    """Offline, a page that needs a CDN is blank: every script, style and icon is local."""
    html = http.get(router.url + page).text
    urls = re.findall(r"""(?:src|href)\s*[=:]\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""url:\s*'([^']+)'""", html)
    assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
    assert assets, html
    for url in urls:
        assert not url.startswith(("http:", "https:", "//")), url
    for url in assets:
        response = http.get(router.url + url)
        assert response.status_code == 200, url
        assert len(response.content) > 1000, url
    if page == "/docs":
        assert any(u.endswith("swagger-ui-bundle.js") for u in assets)
        assert http.get(router.url + "/docs/oauth2-redirect").status_code == 200


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def test_openapi_lists_the_chat_routes_with_a_request_body_schema(
    router: RouterServer, http: httpx.Client
) -> None:
    response = http.get(router.url + "/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for route, family in CHAT_ROUTES.items():
        assert route in paths, sorted(paths)
        post = paths[route]["post"]
        content = post["requestBody"]["content"]
        schema = _resolve(spec, content["application/json"]["schema"])
        assert schema.get("type") == "object"
        assert {"model", "messages"} <= set(schema["properties"])
        required = set(schema.get("required", []))
        assert {"model", "messages"} <= required
        if family == "anthropic":
            assert "max_tokens" in required
    assert "/health" in paths
    assert_no_secret(response.text)


def test_metrics_is_prometheus_text_without_keys(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    http.post(router.url + "/openai/chat/completions", json=good_body("openai"))
    response = http.get(router.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in response.text
    assert_no_secret(response.text)


def test_unknown_top_level_path_is_404(router: RouterServer, http: httpx.Client) -> None:
    response = http.get(router.url + "/no-such-thing")
    assert response.status_code == 404
    assert "Traceback" not in response.text


# --------------------------------------------------------------------------- chat routes


@pytest.mark.parametrize("route", list(CHAT_ROUTES))
def test_every_chat_route_reaches_the_family_upstream(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, route: str
) -> None:
    family = CHAT_ROUTES[route]
    response = http.post(router.url + route, json=good_body(family))
    assert response.status_code == 200, response.text
    assert response.headers["x-router-attempts"] == "1"
    (request,) = fake.requests()
    if family == "openai":
        assert response.json()["object"] == "chat.completion"
        assert request.path == "/oa1/v1/chat/completions"
    else:
        assert response.json()["type"] == "message"
        assert request.path == "/an1/v1/messages"


def test_sdks_work_with_native_and_alias_base_urls(
    router: RouterServer, fake: FakeUpstreamThread
) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    for base in ("/openai", "/openai/v1"):
        with openai.OpenAI(
            base_url=router.url + base,
            api_key="client-key",
            max_retries=0,
            http_client=openai.DefaultHttpxClient(verify=TLS),
        ) as client:
            completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert completion.choices[0].message.content == "Hello from oa1"
    with anthropic.Anthropic(
        base_url=router.url + "/anthropic",
        api_key="client-key",
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(verify=TLS),
    ) as aclient:
        message = aclient.messages.create(model="claude-x", max_tokens=5, messages=messages)
    assert message.content[0].text == "Hello from an1"  # type: ignore[union-attr]
    assert [r.path for r in fake.requests()] == [
        "/oa1/v1/chat/completions",
        "/oa1/v1/chat/completions",
        "/an1/v1/messages",
    ]


# --------------------------------------------------------------------------- public API


def test_create_app_runs_under_another_asgi_server(fake: FakeUpstreamThread) -> None:
    """starlette's TestClient drives the ASGI app in-process, lifespan included."""
    app = create_app(RouterConfig.from_dict(config_for(fake)))
    with TestClient(app) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert {row["name"] for row in provider_rows(health.json())} == {
            "oa1",
            "openai-1",
            "an1",
            "an2",
        }
        response = client.post("/anthropic/v1/messages", json=good_body("anthropic"))
        assert response.status_code == 200, response.text
        assert response.json()["content"][0]["text"] == "Hello from an1"
        assert response.headers["x-router-provider"] == "an1"
    assert [r.provider for r in fake.requests()] == ["an1"]


def test_router_config_from_file_with_env_substitution(
    fake: FakeUpstreamThread, http: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTER_TEST_FILE_KEY", "sk-test-from-env-secret")
    path = tmp_path / "router.json"
    path.write_text(
        json.dumps(
            {
                "openai": [
                    {
                        "name": "filep",
                        "api_key": "${ROUTER_TEST_FILE_KEY}",
                        "base_url": fake.base_url("filep", "openai"),
                    }
                ]
            }
        )
    )
    config = RouterConfig.from_file(path)
    with RouterServer(config) as router:
        response = http.post(router.url + "/openai/chat/completions", json=good_body("openai"))
        health = http.get(router.url + "/health").text
    assert response.status_code == 200
    assert response.headers["x-router-provider"] == "filep"
    (request,) = fake.requests("filep")
    assert request.headers["authorization"] == "Bearer sk-test-from-env-secret"
    assert "sk-test-from-env-secret" not in health


def test_no_provider_at_all_is_said_at_start_up_and_in_health(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", "llm_api_router.server")
    with TestClient(create_app(RouterConfig())) as client:
        health = client.get("/health")
    assert health.status_code == 200  # liveness: a restart would not fix a config
    body = health.json()
    assert body["status"] == "no_providers"
    assert "OPENAI_API_KEY" in body["message"] and "--config" in body["message"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [body["message"]]


def test_one_provider_is_enough_for_ok(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", "llm_api_router.server")
    config = RouterConfig.from_dict({"anthropic": [{"api_key": "k"}]}, environ={})
    with TestClient(create_app(config)) as client:
        body = client.get("/health").json()
    assert body["status"] == "ok"
    assert "message" not in body
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []
