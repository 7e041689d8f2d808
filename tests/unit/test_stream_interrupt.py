"""StreamRelay.interrupt and OpenStreams: a stream ended from outside (a shutdown) gets the
family's native error event, then the end of its body; the provider is not blamed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import orjson
import pytest
from starlette.types import Message

from llm_api_router.errors import UpstreamDisconnected
from llm_api_router.families import ApiFamily, family_for
from llm_api_router.sse import SSEDecoder
from llm_api_router.streaming import OpenStreams, StreamOutcome, StreamRelay, stream_to_client

FIRST = {
    "openai": b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n',
    "anthropic": b'event: message_start\ndata: {"type":"message_start"}\n\n',
}


class _Silent:
    """An upstream stream that sends nothing more until it is closed."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    @property
    def status(self) -> int:
        return 200

    @property
    def headers(self) -> Mapping[str, str]:
        return {}

    async def read(self) -> bytes:
        raise NotImplementedError

    async def next_chunk(self) -> bytes:
        await self.closed.wait()
        raise UpstreamDisconnected("closed")

    def close(self) -> None:
        self.closed.set()


def relay_for(family: ApiFamily, outcomes: list[str]) -> tuple[StreamRelay, _Silent]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if family.name == "anthropic":
        body["max_tokens"] = 5
    request = family.parse_request(orjson.dumps(body))
    response = _Silent()
    relay = StreamRelay(
        family,
        response,
        SSEDecoder(),
        family.new_stream_tracker(request),
        FIRST[family.name],
        provider="p",
        stall_timeout=30,
        on_end=outcomes.append,
    )
    return relay, response


@pytest.mark.parametrize("name", ["openai", "anthropic"])
async def test_interrupt_all_ends_each_open_stream_with_the_native_error(name: str) -> None:
    family = family_for(name)  # type: ignore[arg-type]
    streams = OpenStreams()
    outcomes: list[str] = []
    relay, upstream = relay_for(family, outcomes)
    sent: list[Message] = []
    done: list[str] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    task = asyncio.create_task(
        stream_to_client(relay, 200, [], receive, send, lambda _, o: done.append(o), streams)
    )
    while len(sent) < 2:
        await asyncio.sleep(0)
    assert len(streams) == 1
    assert streams.interrupt_all(503, "The router is shutting down.", code="shutting_down") == 1
    await asyncio.wait_for(task, 5)

    bodies = [m["body"] for m in sent[1:]]
    assert bodies[0] == FIRST[name]
    expected = family.stream_error_event(503, "The router is shutting down.", code="shutting_down")
    assert bodies[1] == expected
    assert sent[-1]["more_body"] is False  # the error event ends the body (in one send)
    assert upstream.closed.is_set()
    assert outcomes == done == [StreamOutcome.INTERRUPTED]
    assert StreamOutcome.INTERRUPTED not in StreamOutcome.FAILURES
    assert len(streams) == 0


async def test_interrupt_after_the_end_changes_nothing() -> None:
    outcomes: list[str] = []
    relay, _ = relay_for(family_for("openai"), outcomes)
    relay.abort()
    relay.interrupt(503, "late", code="shutting_down")
    assert outcomes == [StreamOutcome.CLIENT_DISCONNECTED]
    assert relay.outcome == StreamOutcome.CLIENT_DISCONNECTED
