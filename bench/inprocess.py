"""The router's own Python cost per chat request, in process: no sockets, no server.

Drives ``create_app`` over raw ASGI with a canned transport (a JSON answer, or a 14-event
stream), so what is measured is the router's code alone: parsing, routing, accounts,
scrubbing, relaying, metrics and the access log.  Compare two checkouts in the same run::

    PYTHONPATH=/path/to/old/checkout .venv/bin/python bench/inprocess.py
    PYTHONPATH=. .venv/bin/python bench/inprocess.py

Prints the median (and minimum) of 7 rounds of 2,000 requests, in microseconds.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Mapping
from typing import Any

import orjson

from llm_api_router.config import RouterConfig
from llm_api_router.server import create_app

try:
    from llm_api_router.serve import settle_heap
except ImportError:  # a checkout from before it existed
    settle_heap = None

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }
)


def chunk(text: str, finish: str | None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return b"data: " + orjson.dumps({**data, "choices": [choice]}) + b"\n\n"


STREAM = [
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
    *(chunk(word, None) for word in ("Hello", " there", " how", " are", " you", " today")),
    chunk("", "stop"),
    b"data: [DONE]\n\n",
]


class _Response:
    def __init__(self, stream: bool) -> None:
        self._chunks = list(STREAM) if stream else [ANSWER]
        self.status = 200
        media = "text/event-stream" if stream else "application/json"
        self.headers: Mapping[str, str] = {"content-type": media, "x-request-id": "req_1"}

    async def read(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data

    async def next_chunk(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass

    def limit_wait(self, seconds: float) -> None:
        pass


class _Transport:
    async def request(self, url: str, headers: Any, body: bytes, **kwargs: Any) -> _Response:
        return _Response(b'"stream":true' in body)

    async def aclose(self) -> None:
        pass


async def main() -> None:
    config = RouterConfig.from_dict(
        {
            "openai": [
                {"name": "a", "api_key": "sk-aaaaaaaaaaaaaaaaaaaaaa", "base_url": "http://a/v1"},
                {
                    "name": "b",
                    "api_key": "sk-bbbbbbbbbbbbbbbbbbbbbb",
                    "base_url": "http://b/v1",
                    "priority": 2,
                },
            ]
        }
    )
    app = create_app(config, transport=_Transport())  # type: ignore[arg-type]
    if settle_heap is not None:
        settle_heap()  # what the server does once the app is built
    headers = [(b"content-type", b"application/json"), (b"host", b"router")]
    async with app.router.lifespan_context(app):
        for stream in (False, True):
            body = orjson.dumps(
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
                | ({"stream": True} if stream else {})
            )

            async def one(body: bytes = body) -> None:
                sent: list[Any] = []
                messages = [{"type": "http.request", "body": body, "more_body": False}]

                async def receive() -> Any:
                    if messages:
                        return messages.pop(0)
                    await asyncio.sleep(3600)
                    return {"type": "http.disconnect"}

                async def send(message: Any) -> None:
                    sent.append(message)

                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": "/openai/v1/chat/completions",
                    "raw_path": b"",
                    "root_path": "",
                    "query_string": b"",
                    "headers": headers,
                    "scheme": "http",
                    "server": ("127.0.0.1", 8000),
                    "client": ("127.0.0.1", 1),
                    "http_version": "1.1",
                    "asgi": {"version": "3.0"},
                }
                await app(scope, receive, send)
                assert sent[0]["status"] == 200, sent[0]

            for _ in range(300):
                await one()
            rounds = []
            for _ in range(7):
                started = time.perf_counter()
                for _ in range(2000):
                    await one()
                rounds.append((time.perf_counter() - started) / 2000 * 1e6)
            kind = "stream" if stream else "plain "
            print(
                f"{kind} µs/request: median {statistics.median(rounds):.0f} "
                f"(min {min(rounds):.0f})"
            )


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    asyncio.run(main())
