"""The fake upstream's OpenAI endpoints beyond chat, proven faithful with the official SDK
(openai 3.54, ``max_retries=0``) pointed straight at it."""

from __future__ import annotations

import base64
import json
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llm_api_router.fake_upstream import FakeUpstreamThread, Ok


@pytest.fixture
def oai(fake: FakeUpstreamThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url("p1", "openai"), api_key="x", max_retries=0) as c:
        yield c


def _raw_sse(url: str, payload: object) -> list[tuple[str | None, dict[str, Any]]]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        text = resp.read().decode()
    events = []
    for block in text.strip("\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), json.loads(fields["data"])))
    return events


# --------------------------------------------------------------------------- Responses


def test_responses_create_plain(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="gpt-5", input="Say hello")
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Hello from p1"
    assert response.model == "gpt-5"
    (message,) = response.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + (
        response.usage.output_tokens
    )
    (record,) = fake.requests("p1")
    assert (record.family, record.operation) == ("openai", "responses.create")


def test_responses_stream_wire_sequence(fake: FakeUpstreamThread) -> None:
    url = fake.base_url("p1", "openai") + "/responses"
    events = _raw_sse(url, {"model": "gpt-5", "input": "hi", "stream": True})
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert "".join(d["delta"] for n, d in events if n == "response.output_text.delta") == (
        "Hello from p1"
    )
    assert events[0][1]["response"]["status"] == "in_progress"
    assert events[-1][1]["response"]["status"] == "completed"


def test_responses_stream_with_the_sdk(oai: openai.OpenAI) -> None:
    with oai.responses.create(model="gpt-5", input="hi", stream=True) as stream:
        events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from p1"

    with oai.responses.stream(model="gpt-5", input="hi") as helper:
        deltas = [e.delta for e in helper if e.type == "response.output_text.delta"]
        final = helper.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from p1"
    assert final.status == "completed"


def test_responses_retrieve_delete_and_input_items(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    created = oai.responses.create(model="gpt-5", input="first question")
    fetched = oai.responses.retrieve(created.id)
    assert fetched.id == created.id
    assert fetched.output_text == "Hello from p1"
    items = oai.responses.input_items.list(created.id)
    (item,) = items.data
    assert item.type == "message"
    assert item.id.startswith("msg_")
    oai.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError, match=created.id):
        oai.responses.retrieve(created.id)
    # store: false keeps nothing
    unstored = oai.responses.create(model="gpt-5", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(unstored.id)


def test_previous_response_chain_and_not_found(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model="gpt-5", input="one")
    second = oai.responses.create(model="gpt-5", input="two", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    with pytest.raises(openai.BadRequestError) as excinfo:
        oai.responses.create(model="gpt-5", input="x", previous_response_id="resp_unknown")
    assert excinfo.value.code == "previous_response_not_found"
    assert excinfo.value.param == "previous_response_id"
    assert "resp_unknown" in excinfo.value.message


def test_reasoning_items_and_encrypted_content(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    response = oai.responses.create(
        model="gpt-5",
        input="think",
        store=False,
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"},
    )
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.id.startswith("rs_")
    assert reasoning.encrypted_content
    assert message.type == "message"
    # Sending the item back (stateless) works through the same account ...
    follow_up: list[Any] = [reasoning.to_dict(), {"role": "user", "content": "more"}]
    oai.responses.create(model="gpt-5", input=follow_up, store=False)
    # ... a forged token does not.
    forged = {**reasoning.to_dict(), "encrypted_content": "gAAAAABforged"}
    with pytest.raises(openai.BadRequestError) as excinfo:
        oai.responses.create(model="gpt-5", input=[forged], store=False)
    assert excinfo.value.code == "invalid_encrypted_content"
    # A reference by id to a reasoning item that was not stored is "not found".
    with pytest.raises(openai.NotFoundError, match=f"Item with id '{reasoning.id}' not found"):
        oai.responses.create(model="gpt-5", input=[{"type": "item_reference", "id": reasoning.id}])


def test_reasoning_item_in_the_stream(fake: FakeUpstreamThread) -> None:
    url = fake.base_url("p1", "openai") + "/responses"
    payload = {
        "model": "gpt-5",
        "input": "hi",
        "stream": True,
        "include": ["reasoning.encrypted_content"],
    }
    events = _raw_sse(url, payload)
    names = [name for name, _ in events]
    assert names[2:5] == [
        "response.output_item.added",
        "response.output_item.done",
        "response.output_item.added",
    ]
    done = events[3][1]["item"]
    assert done["type"] == "reasoning"
    assert done["encrypted_content"].startswith("gAAAAA")
    final = events[-1][1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert events[4][1]["output_index"] == 1


def test_responses_input_tokens_compact_and_cancel(oai: openai.OpenAI) -> None:
    counted = oai.responses.input_tokens.count(model="gpt-5", input="one two three")
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == 3
    compacted = oai.responses.compact(model="gpt-5", input="a long conversation")
    assert compacted.object == "response.compaction"
    (item,) = compacted.output
    assert item.type == "compaction"
    assert item.encrypted_content
    background = oai.responses.create(model="gpt-5", input="slow", background=True)
    assert background.status == "queued"
    assert oai.responses.cancel(background.id).status == "cancelled"
    done = oai.responses.create(model="gpt-5", input="fast")
    with pytest.raises(openai.BadRequestError, match="background"):
        oai.responses.cancel(done.id)


# --------------------------------------------------------------------------- other generation


def test_embeddings_float_and_base64(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    result = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 1536
    assert isinstance(result.data[0].embedding[0], float)
    assert fake.requests("p1")[0].json["encoding_format"] == "base64"
    floats = oai.embeddings.create(
        model="text-embedding-3-small", input="a", encoding_format="float", dimensions=8
    )
    assert len(floats.data[0].embedding) == 8
    # Both encodings carry the same (deterministic) vector.
    url = fake.base_url("p1", "openai") + "/embeddings"
    req = urllib.request.Request(
        url,
        data=json.dumps(
            {"model": "m", "input": "a", "encoding_format": "base64", "dimensions": 8}
        ).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        encoded = json.loads(resp.read())["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats.data[0].embedding)


def test_models_list_and_retrieve(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o-mini" in ids
    assert oai.models.retrieve("gpt-4o-mini").object == "model"
    fake.set_models("p1", ["gpt-x", "gpt-y"])
    assert [m.id for m in oai.models.list()] == ["gpt-x", "gpt-y"]
    with pytest.raises(openai.NotFoundError) as excinfo:
        oai.models.retrieve("gpt-4o-mini")
    assert excinfo.value.code == "model_not_found"


def test_completions_plain_and_stream(oai: openai.OpenAI) -> None:
    completion = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Hello from p1"
    with oai.completions.create(model="m", prompt="Say", stream=True) as stream:
        chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == "Hello from p1"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_moderations_speech_transcription_images(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    moderation = oai.moderations.create(input=["fine", "also fine"])
    assert [r.flagged for r in moderation.results] == [False, False]
    assert moderation.id.startswith("modr-")

    speech = oai.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Hello there"
    )
    assert speech.headers["content-type"] == "audio/mpeg"
    audio = speech.content
    assert audio.startswith(b"ID3")
    assert b"\xff\xfb" in audio
    wav = oai.audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input="Hi", response_format="wav"
    )
    assert wav.read()[:4] == b"RIFF"

    upload = bytes(range(256)) * 4
    transcript = oai.audio.transcriptions.create(model="whisper-1", file=("a.wav", upload))
    assert transcript.text == "Hello from p1"
    record = fake.requests("p1")[-1]
    assert record.operation == "audio.transcriptions"
    assert upload in record.body  # multipart recorded byte for byte

    image = oai.images.generate(model="gpt-image-1", prompt="a dot")
    assert image.data is not None
    png = base64.b64decode(image.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


# --------------------------------------------------------------------------- owned objects


def test_files_round_trip(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    content = b'{"custom_id": "1"}\n' + bytes(range(256))
    created = oai.files.create(file=("data.jsonl", content), purpose="batch")
    assert created.id.startswith("file-")
    assert (created.bytes, created.filename, created.purpose) == (
        len(content),
        "data.jsonl",
        "batch",
    )
    upload_request = fake.requests("p1")[-1]
    assert upload_request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert content in upload_request.body
    assert oai.files.retrieve(created.id).id == created.id
    assert [f.id for f in oai.files.list()] == [created.id]
    assert oai.files.content(created.id).read() == content
    assert oai.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        oai.files.retrieve(created.id)


def test_uploads(oai: openai.OpenAI) -> None:
    upload = oai.uploads.create(
        bytes=6, filename="x.txt", mime_type="text/plain", purpose="assistants"
    )
    first = oai.uploads.parts.create(upload.id, data=b"abc")
    second = oai.uploads.parts.create(upload.id, data=b"def")
    done = oai.uploads.complete(upload.id, part_ids=[first.id, second.id])
    assert done.status == "completed"
    assert done.file is not None
    assert oai.files.content(done.file.id).read() == b"abcdef"


def test_batches(oai: openai.OpenAI) -> None:
    line = {
        "custom_id": "r1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    source = oai.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    batch = oai.batches.create(
        input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.id.startswith("batch_")
    assert batch.status == "validating"
    finished = oai.batches.retrieve(batch.id)
    assert finished.status == "completed"
    assert finished.output_file_id is not None
    (result,) = [
        json.loads(x) for x in oai.files.content(finished.output_file_id).read().splitlines()
    ]
    assert result["custom_id"] == "r1"
    assert result["response"]["body"]["choices"][0]["message"]["content"] == "Hello from p1"
    assert [b.id for b in oai.batches.list()] == [batch.id]
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_vector_stores_and_conversations(oai: openai.OpenAI) -> None:
    store = oai.vector_stores.create(name="docs")
    assert store.id.startswith("vs_")
    assert oai.vector_stores.retrieve(store.id).name == "docs"
    assert [s.id for s in oai.vector_stores.list()] == [store.id]
    conversation = oai.conversations.create(metadata={"topic": "x"})
    assert conversation.id.startswith("conv_")
    assert oai.conversations.retrieve(conversation.id).metadata == {"topic": "x"}
    response = oai.responses.create(model="gpt-5", input="hi", conversation=conversation.id)
    assert response.status == "completed"
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="gpt-5", input="hi", conversation="conv_missing")


def test_unknown_path_is_the_real_404(fake: FakeUpstreamThread) -> None:
    req = urllib.request.Request(fake.base_url("p1", "openai") + "/nothing/here", method="GET")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(req, timeout=5)
    with excinfo.value as error:
        assert error.code == 404
        body = json.loads(error.read())
    assert body["error"]["message"] == "Invalid URL (GET /v1/nothing/here)"
    assert body["error"]["type"] == "invalid_request_error"
    (record,) = fake.requests("p1")
    assert (record.family, record.operation) == (None, None)


def test_ok_text_and_headers_apply_to_every_endpoint(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    fake.script("p1", Ok(text="custom", headers={"x-extra": "1"}), Ok(headers={"x-extra": "2"}))
    raw = oai.responses.with_raw_response.create(model="gpt-5", input="x")
    assert raw.parse().output_text == "custom"
    assert raw.headers["x-extra"] == "1"
    emb = oai.embeddings.with_raw_response.create(model="m", input="x")
    assert emb.headers["x-extra"] == "2"
    assert emb.headers["x-request-id"].startswith("req_")


def test_bad_input_gets_native_400s(oai: openai.OpenAI) -> None:
    bad_file = oai.files.create(file=("in.jsonl", b"not json\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="JSONL"):
        oai.batches.create(
            input_file_id=bad_file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError, match="response_format"):
        oai.audio.speech.create(
            model="tts", voice="alloy", input="x", extra_body={"response_format": ["mp3"]}
        )
    upload = oai.uploads.create(bytes=1, filename="x", mime_type="text/plain", purpose="batch")
    with pytest.raises(openai.BadRequestError, match="part"):
        oai.uploads.complete(upload.id, part_ids=[{"id": 1}])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError) as missing:
        oai.embeddings.create(model="m", input=[])
    assert missing.value.param == "input"
    with pytest.raises(openai.BadRequestError) as no_model:
        oai.responses.create(input="x")  # type: ignore[call-overload]
    assert no_model.value.code == "missing_required_parameter"
    with pytest.raises(openai.BadRequestError, match="multipart"):
        oai.post("/files", body={"purpose": "batch"}, cast_to=object)


def test_object_lifecycles_and_pages(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    first = oai.files.create(file=("a.txt", b"a"), purpose="assistants")
    second = oai.files.create(file=("b.jsonl", b"{}"), purpose="batch")
    assert [f.id for f in oai.files.list(purpose="batch")] == [second.id]
    page = oai.files.list(limit=1, order="asc")
    assert [f.id for f in page.data] == [first.id]
    assert page.has_more is True
    assert [f.id for f in oai.files.list(order="asc", after=first.id)] == [second.id]
    with pytest.raises(openai.BadRequestError, match="limit"):
        oai.files.list(extra_query={"limit": "many"})

    upload = oai.uploads.create(bytes=3, filename="x", mime_type="text/plain", purpose="batch")
    assert oai.uploads.cancel(upload.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        oai.uploads.parts.create(upload.id, data=b"abc")
    short = oai.uploads.create(bytes=9, filename="x", mime_type="text/plain", purpose="batch")
    part = oai.uploads.parts.create(short.id, data=b"abc")
    with pytest.raises(openai.BadRequestError, match="does not match"):
        oai.uploads.complete(short.id, part_ids=[part.id])

    batch = oai.batches.create(
        input_file_id=second.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert oai.batches.cancel(batch.id).status == "cancelling"
    assert oai.batches.retrieve(batch.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        oai.batches.cancel(batch.id)

    store = oai.vector_stores.create(name="kb")
    assert oai.vector_stores.delete(store.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        oai.vector_stores.retrieve(store.id)
    conversation = oai.conversations.create()
    assert oai.conversations.delete(conversation.id).deleted is True
    with pytest.raises(openai.NotFoundError, match="Conversation"):
        oai.conversations.retrieve(conversation.id)

    response = oai.responses.create(
        model="gpt-5",
        input=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "3"}]},
        ],
    )
    items = oai.responses.input_items.list(response.id, order="asc", limit=2)
    assert [i.type for i in items.data] == ["message", "message"]
    assert items.has_more is True
    assert len({i.id for i in items.data}) == 2
    with pytest.raises(openai.BadRequestError):
        oai.responses.input_items.list(response.id, extra_query={"order": "sideways"})


def test_responses_incomplete_and_obfuscation(fake: FakeUpstreamThread, oai: openai.OpenAI) -> None:
    short = oai.responses.create(model="gpt-5", input="x", max_output_tokens=1)
    assert short.status == "incomplete"
    assert short.incomplete_details is not None
    assert short.incomplete_details.reason == "max_output_tokens"
    url = fake.base_url("p1", "openai") + "/responses"
    payload = {"model": "gpt-5", "input": "x", "stream": True, "max_output_tokens": 1}
    events = _raw_sse(url, payload)
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["status"] == "incomplete"
    deltas = [data for name, data in events if name == "response.output_text.delta"]
    assert all(isinstance(d["obfuscation"], str) for d in deltas)
    plain = _raw_sse(
        url,
        {
            "model": "gpt-5",
            "input": "x",
            "stream": True,
            "stream_options": {"include_obfuscation": False},
        },
    )
    assert plain[-1][0] == "response.completed"
    assert all("obfuscation" not in data for _, data in plain)
