"""The fake upstream's Anthropic endpoints beyond messages, proven faithful with the official
SDK (anthropic 2.12, ``max_retries=0``) pointed straight at it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from llm_api_router.fake_upstream import FakeUpstreamThread

MESSAGES: list[Any] = [{"role": "user", "content": "one two three"}]


@pytest.fixture
def anth(fake: FakeUpstreamThread) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake.base_url("a1", "anthropic"), api_key="x", max_retries=0
    ) as client:
        yield client


def test_count_tokens(fake: FakeUpstreamThread, anth: anthropic.Anthropic) -> None:
    counted = anth.messages.count_tokens(model="claude-sonnet-4-5", messages=MESSAGES)
    assert counted.input_tokens == 3
    # Claude Code's call: POST /v1/messages/count_tokens?beta=true
    beta = anth.beta.messages.count_tokens(
        model="claude-sonnet-4-5",
        messages=MESSAGES,
        system="be brief",
        extra_query={"beta": "true"},
    )
    assert beta.input_tokens == 5
    first, second = fake.requests("a1")
    assert (first.operation, first.query) == ("messages.count_tokens", "")
    assert (second.operation, second.query) == ("messages.count_tokens", "beta=true")
    with pytest.raises(anthropic.BadRequestError, match="messages: Field required"):
        anth.post("/v1/messages/count_tokens", body={"model": "m"}, cast_to=object)


def test_models(fake: FakeUpstreamThread, anth: anthropic.Anthropic) -> None:
    page = anth.models.list()
    assert page.data
    assert all(m.type == "model" and m.display_name for m in page.data)
    assert page.first_id == page.data[0].id
    assert page.has_more is False
    # newest first, like the real list
    created = [m.created_at for m in page.data]
    assert created == sorted(created, reverse=True)
    one = anth.models.retrieve(page.data[0].id)
    assert one.id == page.data[0].id
    with pytest.raises(anthropic.NotFoundError) as excinfo:
        anth.models.retrieve("claude-nope")
    body: Any = excinfo.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"

    fake.set_models("a1", ["c-one", "c-two", "c-three"])
    first = anth.models.list(limit=2)  # in the order given, the first one newest
    assert [m.id for m in first.data] == ["c-one", "c-two"]
    assert first.has_more is True
    assert [m.id for m in anth.models.list(limit=2, after_id="c-two").data] == ["c-three"]
    assert [m.id for m in anth.models.list(limit=2, before_id="c-three").data] == [
        "c-one",
        "c-two",
    ]
    assert [m.id for m in anth.models.list()] == ["c-one", "c-two", "c-three"]


def test_models_shape_on_the_wire(fake: FakeUpstreamThread) -> None:
    req = urllib.request.Request(fake.base_url("a1", "anthropic") + "/v1/models")
    req.add_header("anthropic-version", "2023-06-01")
    with urllib.request.urlopen(req, timeout=5) as resp:
        page = json.loads(resp.read())
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    assert {"type", "id", "display_name", "created_at"} <= set(page["data"][0])
    assert page["data"][0]["created_at"].endswith("Z")
    # The same path without anthropic-version is OpenAI's list.
    with urllib.request.urlopen(fake.base_url("a1", "openai") + "/models", timeout=5) as resp:
        assert json.loads(resp.read())["object"] == "list"


def test_message_batches(fake: FakeUpstreamThread, anth: anthropic.Anthropic) -> None:
    batch = anth.messages.batches.create(
        requests=[
            {
                "custom_id": f"r{i}",
                "params": {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": MESSAGES},
            }
            for i in range(2)
        ]
    )
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.results_url is None
    ended = anth.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 2
    assert ended.results_url == (
        f"{fake.url}/a1/v1/messages/batches/{batch.id}/results"
    )  # absolute, like the real API's
    results = list(anth.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == ["r0", "r1"]
    assert all(r.result.type == "succeeded" for r in results)
    first = results[0].result
    assert first.type == "succeeded"
    assert first.message.content[0].type == "text"
    assert fake.requests("a1")[-1].path == f"/a1/v1/messages/batches/{batch.id}/results"
    assert [b.id for b in anth.messages.batches.list()] == [batch.id]
    anth.messages.batches.delete(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        anth.messages.batches.retrieve(batch.id)

    canceled = anth.messages.batches.create(
        requests=[{"custom_id": "x", "params": {"model": "m", "max_tokens": 1, "messages": []}}]
    )
    assert anth.messages.batches.cancel(canceled.id).processing_status == "canceling"
    after = anth.messages.batches.retrieve(canceled.id)
    assert (after.processing_status, after.request_counts.canceled) == ("ended", 1)


def test_beta_files(fake: FakeUpstreamThread, anth: anthropic.Anthropic) -> None:
    content = bytes(range(256)) * 3
    created = anth.beta.files.upload(file=("doc.pdf", content, "application/pdf"))
    assert created.id.startswith("file_")
    assert (created.filename, created.mime_type, created.size_bytes) == (
        "doc.pdf",
        "application/pdf",
        len(content),
    )
    upload = fake.requests("a1")[-1]
    assert upload.operation == "files.create"
    assert upload.family == "anthropic"
    assert content in upload.body
    assert anth.beta.files.retrieve_metadata(created.id).id == created.id
    assert [f.id for f in anth.beta.files.list()] == [created.id]
    assert anth.beta.files.download(created.id).read() == content
    anth.beta.files.delete(created.id)
    with pytest.raises(anthropic.NotFoundError) as excinfo:
        anth.beta.files.retrieve_metadata(created.id)
    body: Any = excinfo.value.body
    assert body["error"]["type"] == "not_found_error"


def test_unknown_anthropic_path_is_not_found_error(fake: FakeUpstreamThread) -> None:
    req = urllib.request.Request(fake.base_url("a1", "anthropic") + "/v1/nowhere")
    req.add_header("anthropic-version", "2023-06-01")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(req, timeout=5)
    with excinfo.value as error:
        assert error.code == 404
        body = json.loads(error.read())
    assert body["type"] == "error"
    assert body["error"] == {"type": "not_found_error", "message": "Not Found"}
