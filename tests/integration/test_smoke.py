"""The real server against the fake upstream, through both official SDKs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai

from llm_api_router.fake_upstream import FakeUpstreamThread, rate_limited
from tests.conftest import StartRouter


def test_openai_sdk_fallback_on_429(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Callable[..., dict[str, Any]]
) -> None:
    router = start_router({"openai": [provider("a"), provider("b", priority=2)]})
    fake.script("a", rate_limited(retry_after=30))
    client = openai.OpenAI(base_url=f"{router.url}/openai", api_key="client", max_retries=0)
    with client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from b"
    assert raw.headers["x-router-provider"] == "b"
    assert raw.headers["x-router-attempts"] == "2"


def test_anthropic_sdk(
    fake: FakeUpstreamThread, start_router: StartRouter, provider: Callable[..., dict[str, Any]]
) -> None:
    router = start_router({"anthropic": [provider("a", "anthropic")]})
    client = anthropic.Anthropic(
        base_url=f"{router.url}/anthropic", api_key="client", max_retries=0
    )
    with client:
        message = client.messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        with client.messages.stream(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = stream.get_final_text()
    assert message.content[0].text == "Hello from a"  # type: ignore[union-attr]
    assert text == "Hello from a"
    first, _ = fake.requests("a")
    assert first.headers["x-api-key"] == "sk-test-a-secret"
    assert first.headers["anthropic-version"]
