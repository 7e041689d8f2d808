"""Accounts (SPEC section 10) through the real router and the fake upstream.

Two OpenAI accounts: A has two keys (a1, a2), B one (b1); the fake groups a1 and a2 into
one account, so what is created through one is found through the other and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_api_router.fake_upstream import (
    Error,
    FakeUpstreamThread,
    Ok,
    insufficient_quota,
    rate_limited,
)
from tests.routerserver import RouterServer

MODEL_X, MODEL_Y = "gpt-4.1-mini", "gpt-4.1"


def providers(fake: FakeUpstreamThread, family: str, **extra: Any) -> list[dict[str, Any]]:
    rows = [("a1", "A", 1), ("a2", "A", 1), ("b1", "B", 2)]
    return [
        {
            "name": name,
            "account": account,
            "api_key": f"sk-{name}-0123456789abcdef",
            "base_url": fake.base_url(name, family),  # type: ignore[arg-type]
            "priority": priority,
            "max_retries": 0,
            **extra,
        }
        for name, account, priority in rows
    ]


@pytest.fixture
def accounts(fake: FakeUpstreamThread) -> FakeUpstreamThread:
    fake.set_account("a1", "A")
    fake.set_account("a2", "A")
    return fake


@pytest.fixture
def router(accounts: FakeUpstreamThread) -> Iterator[RouterServer]:
    config = {
        "openai": providers(accounts, "openai"),
        "anthropic": providers(accounts, "anthropic"),
        # No session affinity here: these tests are about accounts and priority.
        "settings": {"session_affinity": False},
    }
    with RouterServer(config) as server:
        yield server


@pytest.fixture
def oai(router: RouterServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{router.url}/openai", api_key="x", max_retries=0) as client:
        yield client


def asked(fake: FakeUpstreamThread) -> list[str]:
    return [r.provider for r in fake.requests()]


def test_a_conversation_survives_its_key_being_rate_limited(
    accounts: FakeUpstreamThread, oai: openai.OpenAI, router: RouterServer
) -> None:
    first = oai.responses.with_raw_response.create(
        model=MODEL_X,
        input="Think, then say hi",
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
    )
    owner = first.headers["x-router-provider"]
    sibling = "a2" if owner == "a1" else "a1"
    assert owner in ("a1", "a2")
    response = first.parse()
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].encrypted_content
    # The key that served it is rate limited; the follow-up (Codex style: the previous
    # response and the encrypted reasoning item sent back) stays in account A.
    accounts.set_default(owner, rate_limited(60))
    follow = oai.responses.with_raw_response.create(
        model=MODEL_X,
        previous_response_id=response.id,
        input=[
            reasoning[0].model_dump(exclude_none=True),
            {"role": "user", "content": "And again"},
        ],
        include=["reasoning.encrypted_content"],
    )
    assert follow.headers["x-router-provider"] == sibling
    assert follow.parse().output_text
    assert "b1" not in asked(accounts)
    # The stream form too, and the ids it hands out are recorded as well.
    with oai.responses.stream(
        model=MODEL_X, previous_response_id=follow.parse().id, input="Once more"
    ) as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    third = oai.responses.with_raw_response.create(
        model=MODEL_X, previous_response_id=final.id, input="Last"
    )
    assert third.headers["x-router-provider"] == sibling
    assert "b1" not in asked(accounts)


def test_the_owning_account_down_is_a_native_429_naming_it(
    accounts: FakeUpstreamThread, oai: openai.OpenAI, router: RouterServer
) -> None:
    response = oai.responses.create(model=MODEL_X, input="hi")
    accounts.set_default("a1", rate_limited(30))
    accounts.set_default("a2", rate_limited(30))
    with pytest.raises(openai.RateLimitError) as caught:
        oai.responses.create(model=MODEL_X, previous_response_id=response.id, input="again")
    assert "'A'" in str(caught.value)
    assert caught.value.response.headers.get("retry-after")
    assert "b1" not in asked(accounts)
    # Once both keys have been seen limited, the router answers without asking them.
    before = len(accounts.requests())
    with pytest.raises(openai.RateLimitError):
        oai.responses.create(model=MODEL_X, previous_response_id=response.id, input="again")
    assert len(accounts.requests()) == before
    health = httpx.get(router.url + "/health").json()
    scopes = {(c["account"], c["model"], c["limit_class"]) for c in health["cooldowns"]["openai"]}
    assert ("A", MODEL_X, "generate") in scopes


def test_a_file_is_read_through_its_account_only(
    accounts: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    created = oai.files.with_raw_response.create(
        file=("data.jsonl", b'{"a": 1}\n', "application/jsonl"), purpose="batch"
    )
    owner = created.headers["x-router-provider"]
    file_id = created.parse().id
    accounts.set_default(owner, rate_limited(60))
    read = oai.files.with_raw_response.retrieve(file_id)
    assert read.headers["x-router-provider"] in ("a1", "a2")
    assert read.headers["x-router-provider"] != owner
    assert oai.files.content(file_id).read() == b'{"a": 1}\n'
    assert "b1" not in asked(accounts)


def test_an_id_the_router_never_saw_is_found_by_trying_accounts(
    accounts: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    # Created behind the router's back, through b1's own URL.
    direct = openai.OpenAI(base_url=accounts.base_url("b1", "openai"), api_key="k", max_retries=0)
    made = direct.files.create(file=("x.txt", b"hello", "text/plain"), purpose="assistants")
    found = oai.files.with_raw_response.retrieve(made.id)
    assert found.headers["x-router-provider"] == "b1"
    assert found.parse().id == made.id
    asked_for = asked(accounts)[1:]
    assert asked_for[-1] == "b1" and set(asked_for[:-1]) <= {"a1", "a2"}
    # Now the router knows: the next read goes straight to B.
    before = len(accounts.requests())
    again = oai.files.with_raw_response.retrieve(made.id)
    assert again.headers["x-router-provider"] == "b1"
    assert asked(accounts)[before:] == ["b1"]


def test_a_previous_response_the_router_never_saw(
    accounts: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    direct = openai.OpenAI(base_url=accounts.base_url("b1", "openai"), api_key="k", max_retries=0)
    made = direct.responses.create(model=MODEL_X, input="hi")
    follow = oai.responses.with_raw_response.create(
        model=MODEL_X, previous_response_id=made.id, input="again"
    )
    assert follow.headers["x-router-provider"] == "b1"
    # Account A was asked first and did not know it (400 previous_response_not_found).
    tried = asked(accounts)[1:]
    assert tried[-1] == "b1" and set(tried[:-1]) <= {"a1", "a2"} and tried[:-1]


def test_a_rate_limit_cools_down_the_account_model_and_class_only(
    accounts: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    for key in ("a1", "a2"):
        accounts.set_default(key, rate_limited(30))
    first = oai.chat.completions.with_raw_response.create(
        model=MODEL_X, messages=[{"role": "user", "content": "hi"}]
    )
    for key in ("a1", "a2"):
        accounts.set_default(key, Ok())
    # One call to account A (whichever key came first), then B: never A's second key.
    assert first.headers["x-router-provider"] == "b1"
    assert len(asked(accounts)) == 2 and asked(accounts)[0] in ("a1", "a2")
    # Model X stays off account A ...
    again = oai.chat.completions.with_raw_response.create(
        model=MODEL_X, messages=[{"role": "user", "content": "hi"}]
    )
    assert again.headers["x-router-provider"] == "b1"
    # ... but model Y, and embeddings of the same account, are untouched.
    other = oai.chat.completions.with_raw_response.create(
        model=MODEL_Y, messages=[{"role": "user", "content": "hi"}]
    )
    assert other.headers["x-router-provider"] in ("a1", "a2")
    embedded = oai.embeddings.with_raw_response.create(model=MODEL_X, input="x")
    assert embedded.headers["x-router-provider"] in ("a1", "a2")


def test_count_tokens_429_does_not_cool_down_messages(
    accounts: FakeUpstreamThread, router: RouterServer
) -> None:
    with anthropic.Anthropic(base_url=f"{router.url}/anthropic", api_key="x", max_retries=0) as ant:
        for key in ("a1", "a2"):
            accounts.set_default(key, rate_limited(30), operation="messages.count_tokens")
        counted = ant.messages.count_tokens(
            model="claude-sonnet-5-5", messages=[{"role": "user", "content": "x"}]
        )
        assert counted.input_tokens > 0
        assert [r.provider for r in accounts.requests()][-1] == "b1"
        raw = ant.messages.with_raw_response.create(
            model="claude-sonnet-5-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
        assert raw.headers["x-router-provider"] in ("a1", "a2")


def test_a_rejected_key_leaves_its_sibling_in_use(
    accounts: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    accounts.set_default("a1", Error(401))
    for _ in range(3):
        raw = oai.chat.completions.with_raw_response.create(
            model=MODEL_X, messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-router-provider"] == "a2"
    assert asked(accounts).count("a1") == 1


def test_no_credit_takes_the_whole_account_out(
    accounts: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    accounts.script("a1", insufficient_quota())
    accounts.script("a2", insufficient_quota())
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL_X, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-router-provider"] == "b1"
    assert len(asked(accounts)) == 2
    other = oai.embeddings.with_raw_response.create(model="text-embedding-3-small", input="x")
    assert other.headers["x-router-provider"] == "b1"  # every model and operation


def test_a_session_stays_on_one_provider_while_it_is_healthy(
    accounts: FakeUpstreamThread,
) -> None:
    config = {"openai": providers(accounts, "openai")}
    with (
        RouterServer(config) as server,
        openai.OpenAI(base_url=f"{server.url}/openai", api_key="x", max_retries=0) as oai,
    ):

        def turn(session: str) -> str:
            raw = oai.chat.completions.with_raw_response.create(
                model=MODEL_X,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"session_id": session},
            )
            return str(raw.headers["x-router-provider"])

        first = turn("s-1")
        assert [turn("s-1") for _ in range(6)] == [first] * 6
        # Without a session, equal priorities still share the load.
        loose = {
            oai.chat.completions.with_raw_response.create(
                model=MODEL_Y, messages=[{"role": "user", "content": "hi"}]
            ).headers["x-router-provider"]
            for _ in range(4)
        }
        assert loose == {"a1", "a2"}
        # When its provider fails, the session moves, and then stays where it went.
        accounts.set_default(first, Error(401))
        moved = turn("s-1")
        assert moved != first
        assert [turn("s-1") for _ in range(3)] == [moved] * 3
        metrics = httpx.get(server.url + "/metrics").text
        assert 'llm_router_pinned_requests_total{family="openai",reason="session"}' in metrics
