"""Accounts: scopes, owned ids, sessions (sans-IO, over an in-process state)."""

from __future__ import annotations

import orjson

from llm_api_router.accounts import Accounts
from llm_api_router.config import RouterConfig
from llm_api_router.families import AnthropicFamily, LimitClass, OpenAIFamily
from llm_api_router.health import ProviderHealth
from llm_api_router.routing import Candidate
from llm_api_router.state import LocalState

from .fakes import ManualClock

OPENAI = OpenAIFamily()


def setup() -> tuple[Accounts, list[Candidate], ManualClock]:
    config = RouterConfig.from_dict(
        {
            "openai": [
                {"name": "a1", "account": "A", "api_key": "k1", "base_url": "http://a1"},
                {"name": "a2", "account": "A", "api_key": "k2", "base_url": "http://a2"},
                {"name": "b1", "api_key": "k3", "base_url": "http://b1"},
            ]
        }
    )
    clock = ManualClock(100.0)
    state = LocalState(clock=clock)
    health = ProviderHealth(threshold=3, open_seconds=5)
    candidates = [Candidate(p, health, "gpt-x") for p in config.openai]
    return (
        Accounts(
            OPENAI,
            state,
        ),
        candidates,
        clock,
    )


def test_a_rate_limit_holds_back_the_account_for_that_model_and_class() -> None:
    accounts, (a1, a2, b1), clock = setup()
    assert accounts.cool_down(a1, LimitClass.GENERATE, "rate_limited", clock.now + 10)
    generate = accounts.limits(LimitClass.GENERATE)
    assert generate(a1) == generate(a2) == clock.now + 10
    assert generate(b1) == 0.0  # another account
    assert accounts.limits(LimitClass.EMBEDDINGS)(a2) == 0.0  # another operation
    other_model = Candidate(a2.provider, a2.health, "gpt-y")
    assert generate(other_model) == 0.0  # another model
    # Pinned to the account, only the key that was limited waits.
    pinned = accounts.limits(LimitClass.GENERATE, pinned=True)
    assert pinned(a1) == clock.now + 10 and pinned(a2) == 0.0


def test_missing_credit_takes_out_the_account_and_a_bad_key_only_itself() -> None:
    accounts, (a1, a2, b1), clock = setup()
    assert accounts.cool_down(a1, LimitClass.GENERATE, "quota_exhausted", clock.now + 600)
    for limit in LimitClass:
        assert accounts.limits(limit)(a2) == clock.now + 600
        assert accounts.limits(limit, pinned=True)(a2) == clock.now + 600
    assert accounts.limits(LimitClass.GENERATE)(b1) == 0.0
    assert not accounts.cool_down(b1, LimitClass.GENERATE, "auth_failed", clock.now + 600)
    assert accounts.limited_until(clock.now) == {"A": clock.now + 600}
    (row,) = accounts.cooling(clock.now)
    assert row[:2] == ("account", "A")


def test_owned_ids_are_found_in_answers_paths_and_bodies() -> None:
    accounts, _, _ = setup()
    answer = orjson.dumps(
        {
            "id": "resp_0123456789abcdef",
            "output": [
                {"id": "rs_0123456789abcdef", "type": "reasoning", "encrypted_content": "e" * 40},
                {"id": "msg_0123456789abcdef", "type": "message"},
            ],
        }
    )
    accounts.record(answer, [], "A")
    follow_up = OPENAI.parse_request(
        orjson.dumps(
            {
                "model": "m",
                "previous_response_id": "resp_0123456789abcdef",
                "input": [{"type": "reasoning", "encrypted_content": "e" * 40}],
            }
        ),
        OPENAI.operations.find("POST", "responses"),
        path="responses",
    )
    references = accounts.references(follow_up, "responses")
    assert "resp_0123456789abcdef" in references
    assert any(r.startswith("enc:") for r in references)
    assert accounts.owner(references) == "A"
    assert accounts.owner(["file-unknown123456"]) is None
    get = OPENAI.parse_request(b"", OPENAI.operations.find("GET", "files/file-abcdef123"))
    assert accounts.references(get, "files/file-abcdef123/content") == ["file-abcdef123"]
    assert AnthropicFamily.owned.in_path("messages/batches/msgbatch_01abcdefgh/results") == [
        "msgbatch_01abcdefgh"
    ]


def test_sessions_come_from_headers_then_the_body_and_are_hashed() -> None:
    op = OPENAI.operations.find("POST", "responses")

    def request(body: dict[str, object]) -> object:
        return OPENAI.parse_request(orjson.dumps({"model": "m", **body}), op, path="responses")

    plain = request({})
    assert Accounts.session({}, plain) is None  # type: ignore[arg-type]
    by_header = Accounts.session({"session_id": "abc"}, plain)  # type: ignore[arg-type]
    assert by_header is not None and "abc" not in by_header
    cache_key = Accounts.session({}, request({"prompt_cache_key": "abc"}))  # type: ignore[arg-type]
    assert cache_key == by_header
    user = Accounts.session({}, request({"metadata": {"user_id": "u-1"}}))  # type: ignore[arg-type]
    assert user is not None and user != by_header
    claude = Accounts.session(
        {"x-claude-code-session-id": "abc", "session_id": "zzz"}, plain  # type: ignore[arg-type]
    )
    assert claude == by_header


async def test_when_a_limit_ends_one_request_tries_the_account_again() -> None:
    import asyncio

    from llm_api_router.dispatch import Dispatcher

    from .fakes import Canned, ScriptedTransport

    config = RouterConfig.from_dict(
        {
            "openai": [
                {"name": "a1", "account": "A", "api_key": "k1", "base_url": "http://a1"},
                {"name": "b1", "api_key": "k3", "base_url": "http://b1", "priority": 2},
            ]
        }
    )
    clock = ManualClock(100.0)
    gate = asyncio.Event()

    class Slow(ScriptedTransport):
        async def request(self, url: str, *args: object, **kwargs: object) -> object:
            if url.startswith("http://a1") and len(self.sent) > 1:
                await gate.wait()  # the retry of account A is still on its way
            return await super().request(url, *args, **kwargs)  # type: ignore[arg-type]

    transport = Slow()
    dispatcher = Dispatcher(OPENAI, config.openai, config.settings, transport, clock=clock)
    body = orjson.dumps({"model": "m", "messages": []})

    async def ask() -> str:
        reply = await dispatcher.dispatch(OPENAI.parse_request(body), {}, "")
        return reply.provider

    transport.script("http://a1", Canned(429, b"{}", {"retry-after": "5"}))
    assert await ask() == "b1"  # A is limited: its one call, then B
    clock.advance(6)  # the limit is over
    first = asyncio.create_task(ask())  # this one tries A again ...
    await asyncio.sleep(0)
    # ... while these go to B meanwhile (without the one-retry rule they would wait on A).
    others = [await asyncio.wait_for(ask(), 2) for _ in range(3)]
    assert others == ["b1"] * 3
    gate.set()
    assert await first == "a1"
    assert await ask() == "a1"  # A answered: it is back for everyone
    hosts = transport.hosts()
    assert hosts.count("a1") == 3  # the 429, the one retry, the request after it
