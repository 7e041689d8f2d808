"""Hostile upstreams: a provider key the upstream echoes never reaches the client, whatever
path the bytes take (error bodies, first-event errors, mid-stream events, headers, any
endpoint), and odd upstream headers never make a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llm_api_router.fake_upstream import Error, FakeUpstreamThread, Raw, Stream
from tests.routerserver import RouterServer

LONG_KEY = "sk-proj-ECHOED-0123456789abcdefghij"
SHORT_KEY = "test"  # a local server's key: redacted only as a whole token
KEYS = {"openai": LONG_KEY, "anthropic": LONG_KEY}
PATHS = {"openai": "/openai/v1/chat/completions", "anthropic": "/anthropic/v1/messages"}


def body_for(family: str, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "latest-test-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    if family == "anthropic":
        body["max_tokens"] = 16
    return body


@pytest.fixture
def router(fake_upstream: FakeUpstreamThread) -> Iterator[RouterServer]:
    # One router per test: provider state (cooldowns, circuits) must not leak between them.
    config = {
        "openai": [
            {"name": "oa", "api_key": LONG_KEY, "base_url": fake_upstream.base_url("oa", "openai")},
            {
                "name": "local",
                "api_key": SHORT_KEY,
                "priority": 2,
                "base_url": fake_upstream.base_url("local", "openai"),
            },
        ],
        "anthropic": [
            {
                "name": "an",
                "api_key": LONG_KEY,
                "base_url": fake_upstream.base_url("an", "anthropic"),
            }
        ],
    }
    with RouterServer(config) as server:
        yield server


def clean(response: httpx.Response) -> str:
    text = response.text + "".join(f"{k}:{v}\n" for k, v in response.headers.items())
    assert LONG_KEY not in text
    assert f"Bearer {SHORT_KEY}" not in text
    return text


@pytest.mark.parametrize("family", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [400, 422])
def test_an_error_body_that_quotes_the_key(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str, status: int
) -> None:
    provider = "oa" if family == "openai" else "an"
    fake.script(
        provider, Error(status, message=f"Invalid header: Authorization: Bearer {LONG_KEY}")
    )
    response = http.post(router.url + PATHS[family], json=body_for(family))
    assert response.status_code == status
    assert "Bearer [REDACTED]" in clean(response)


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_first_event_error_that_quotes_the_key(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str
) -> None:
    provider = "oa" if family == "openai" else "an"
    fake.script(
        provider,
        Stream(
            error_at=0,
            error_type="invalid_request_error",
            error_message=f"bad key {LONG_KEY}",
        ),
    )
    response = http.post(router.url + PATHS[family], json=body_for(family, stream=True))
    assert response.status_code == 400
    assert "[REDACTED]" in clean(response)


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_mid_stream_error_and_text_that_quote_the_key(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, family: str
) -> None:
    provider = "oa" if family == "openai" else "an"
    fake.script(provider, Stream(text=f"your key is {LONG_KEY} ok", chunks=1))
    response = http.post(router.url + PATHS[family], json=body_for(family, stream=True))
    assert response.status_code == 200
    assert "[REDACTED]" in clean(response)
    # Paced, so the error comes after the commit (an error in the first read falls back).
    fake.script(
        provider, Stream(error_at=3, interval=0.05, error_message=f"upstream saw {LONG_KEY}")
    )
    response = http.post(router.url + PATHS[family], json=body_for(family, stream=True))
    assert response.status_code == 200
    assert "[REDACTED]" in clean(response)


def test_a_short_key_is_scrubbed_as_a_token_and_unrelated_text_is_kept(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    fake.set_default("oa", Error(503))
    try:
        fake.script("local", Error(400, message=f"Authorization: Bearer {SHORT_KEY} rejected"))
        response = http.post(router.url + PATHS["openai"], json=body_for("openai"))
    finally:
        fake.reset()
    assert response.status_code == 400
    text = clean(response)
    assert "Bearer [REDACTED] rejected" in text
    ok = http.post(router.url + PATHS["openai"], json=body_for("openai"))
    assert ok.status_code == 200 and "latest-test-model" in ok.text


def test_a_passed_back_header_is_scrubbed(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    fake.script(
        "oa",
        Raw(
            200,
            f'{{"id": "file-1", "note": "{LONG_KEY}"}}'.encode(),
            headers={"x-request-id": f"req-{LONG_KEY}"},
        ),
    )
    response = http.post(router.url + PATHS["openai"], json=body_for("openai"))
    assert response.status_code == 200
    assert "[REDACTED]" in clean(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/openai/v1/files/file-abc123"), ("POST", "/openai/v1/embeddings")],
)
def test_any_endpoint_is_scrubbed(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client, method: str, path: str
) -> None:
    fake.script("oa", Error(400, message=f"proxy saw Authorization: Bearer {LONG_KEY}"))
    response = http.request(method, router.url + path, json={"model": "m", "input": "x"})
    assert response.status_code == 400
    assert "Bearer [REDACTED]" in clean(response)
    assert fake.requests("oa")[-1].path == path.replace("/openai", "/oa")


def test_a_non_latin1_upstream_header_is_no_500(
    router: RouterServer, fake: FakeUpstreamThread, http: httpx.Client
) -> None:
    fake.script("oa", Raw(200, b'{"id": "x", "choices": []}', headers={"x-request-id": "€-1"}))
    response = http.post(router.url + PATHS["openai"], json=body_for("openai"))
    assert response.status_code == 200
    assert response.headers.get_list("x-router-provider") == ["oa"]
    assert http.get(router.url + "/health").status_code == 200
