"""StreamRelay and stream_to_client over a scripted upstream response and a recorded ASGI send."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import orjson

from llm_api_router.errors import UpstreamDisconnected, UpstreamTimeout, UpstreamTransportError
from llm_api_router.families import OpenAIFamily
from llm_api_router.sse import SSEDecoder
from llm_api_router.streaming import StreamRelay, stream_to_client
from tests.unit.fakes import Canned, _Response

ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}\n\n'
TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
FINISH = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
DONE = b"data: [DONE]\n\n"


def relay_for(chunks: list[bytes | UpstreamTransportError]) -> tuple[StreamRelay, _Response]:
    family = OpenAIFamily()
    request = family.parse_request(orjson.dumps({"model": "m", "messages": [], "stream": True}))
    response = _Response(Canned(chunks=chunks))
    decoder = SSEDecoder()
    tracker = family.new_stream_tracker(request)
    first = decoder.feed(ROLE)
    for event in first:
        tracker.observe(event)
    relay = StreamRelay(
        family,
        response,
        decoder,
        tracker,
        ROLE,
        provider="p",
        stall_timeout=30,
        on_end=lambda outcome: None,
        finish_grace=0.25,
    )
    return relay, response


async def run(relay: StreamRelay) -> tuple[list[MutableMapping[str, Any]], str]:
    sent: list[MutableMapping[str, Any]] = []
    outcomes: list[str] = []

    async def receive() -> dict[str, object]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await stream_to_client(relay, 200, [], receive, send, lambda _, o: outcomes.append(o))
    assert len(outcomes) == 1
    return sent, outcomes[0]


async def test_complete_stream_releases_the_upstream_and_ends_with_its_last_event() -> None:
    relay, response = relay_for([TOKEN, TOKEN + FINISH, DONE])
    sent, outcome = await run(relay)
    assert outcome == "complete"
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert [m["body"] for m in bodies] == [ROLE, TOKEN, TOKEN + FINISH, DONE]
    assert [m["more_body"] for m in bodies] == [True, True, True, False]  # no empty last write
    assert response.released


async def test_nothing_after_the_terminal_event_is_relayed() -> None:
    relay, _ = relay_for([TOKEN + FINISH + DONE + TOKEN])
    sent, outcome = await run(relay)
    assert outcome == "complete"
    assert b"".join(m.get("body", b"") for m in sent) == ROLE + TOKEN + FINISH + DONE


async def test_cut_stream_closes_the_upstream_with_a_native_error() -> None:
    relay, response = relay_for([TOKEN, UpstreamDisconnected("x")])
    sent, outcome = await run(relay)
    assert outcome == "cut"
    assert b"closed the stream before its natural end" in sent[-1]["body"]
    assert response.closed and not response.released


async def test_stall_before_the_finish_is_an_error_event() -> None:
    relay, response = relay_for([TOKEN, UpstreamTimeout("x")])
    sent, outcome = await run(relay)
    assert outcome == "stalled"
    assert b"sent nothing for 30 s" in sent[-1]["body"]
    assert not response.released


async def test_after_the_finish_the_wait_is_the_finish_grace_then_the_stream_completes() -> None:
    relay, response = relay_for([FINISH, UpstreamTimeout("x")])
    sent, outcome = await run(relay)
    assert response.wait_limit == 0.25
    assert outcome == "complete"
    assert sent[-1]["body"] == DONE and sent[-1]["more_body"] is False
