"""Every endpoint of both APIs through the router (SPEC section 9), driven by the official
SDKs (``max_retries=0``) against the fake upstream: healthy, and with the primary failing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from llm_api_router.fake_upstream import (
    Error,
    FakeUpstreamThread,
    Stream,
    rate_limited,
    response_failed,
)
from tests.routerserver import RouterServer

PRIMARY = {"openai": "op", "anthropic": "ap"}
BACKUP = {"openai": "ob", "anthropic": "ab"}


@pytest.fixture
def router(fake: FakeUpstreamThread) -> Iterator[RouterServer]:
    def providers(family: str) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "api_key": f"sk-{name}-0123456789abcdef",
                "base_url": fake.base_url(name, family),  # type: ignore[arg-type]
                "priority": priority,
                "max_retries": 0,
            }
            for priority, name in ((1, PRIMARY[family]), (2, BACKUP[family]))
        ]

    config = {
        "openai": providers("openai"),
        "anthropic": providers("anthropic"),
        "settings": {"retry_backoff_base": 0.0},
    }
    with RouterServer(config) as server:
        yield server


@pytest.fixture
def oai(router: RouterServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{router.url}/openai", api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(router: RouterServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=f"{router.url}/anthropic", api_key="x", max_retries=0) as c:
        yield c


def served_by(raw: Any) -> str:
    return str(raw.headers["x-router-provider"])


# -- OpenAI Responses ----------------------------------------------------------------------


@pytest.mark.parametrize("primary_fails", [False, True])
def test_responses_create(
    fake: FakeUpstreamThread, oai: openai.OpenAI, primary_fails: bool
) -> None:
    if primary_fails:
        fake.script("op", rate_limited(5))
    raw = oai.responses.with_raw_response.create(model="gpt-4.1-mini", input="Say hi")
    response = raw.parse()
    assert response.output_text
    assert response.id.startswith("resp_")
    assert served_by(raw) == ("ob" if primary_fails else "op")
    assert fake.requests()[-1].path.endswith("/v1/responses")


def test_responses_stream_get_final_response(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4.1-mini", input="Say hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.status == "completed" and final.output_text


@pytest.mark.parametrize("code", ["rate_limit_exceeded", "server_error"])
def test_responses_stream_failing_before_output_falls_back(
    fake: FakeUpstreamThread, oai: openai.OpenAI, code: str
) -> None:
    fake.script("op", response_failed(at=0, code=code))
    with oai.responses.stream(model="gpt-4.1-mini", input="Say hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.status == "completed"
    assert all(e.type not in ("error", "response.failed") for e in events)
    assert [r.provider for r in fake.requests()] == ["op", "ob"]


def test_responses_stream_cut_after_output_ends_in_response_failed(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    fake.script("op", Stream(cut_after=2, interval=0.02))
    stream = oai.responses.create(model="gpt-4.1-mini", input="Say hi", stream=True)
    events = list(stream)
    assert events[-1].type == "response.failed"
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "stream_cut"  # type: ignore[comparison-overlap]
    assert all(e.type != "response.completed" for e in events)
    assert [r.provider for r in fake.requests()] == ["op"]


def test_stored_response_retrieve_and_input_tokens(oai: openai.OpenAI) -> None:
    created = oai.responses.create(model="gpt-4.1-mini", input="Remember me")
    again = oai.responses.retrieve(created.id)
    assert again.id == created.id
    counted = oai.responses.input_tokens.count(model="gpt-4.1-mini", input="Count these tokens")
    assert counted.input_tokens > 0


# -- other OpenAI generation endpoints -------------------------------------------------------


@pytest.mark.parametrize("primary_fails", [False, True])
def test_embeddings(fake: FakeUpstreamThread, oai: openai.OpenAI, primary_fails: bool) -> None:
    if primary_fails:
        fake.script("op", Error(500))
    raw = oai.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"])
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
    assert served_by(raw) == ("ob" if primary_fails else "op")
    base64 = oai.embeddings.create(
        model="text-embedding-3-small", input="a", encoding_format="base64"
    )
    assert base64.data[0].embedding


def test_legacy_completions_plain_and_streamed(oai: openai.OpenAI) -> None:
    done = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert done.choices[0].text
    pieces = list(oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True))
    assert any(p.choices and p.choices[0].finish_reason for p in pieces)


def test_moderations_and_images(oai: openai.OpenAI) -> None:
    moderation = oai.moderations.create(model="omni-moderation-latest", input="hello")
    assert moderation.results
    image = oai.images.generate(model="dall-e-2", prompt="a cat", n=1)
    assert image.data


def test_audio_speech_arrives_byte_for_byte(
    fake: FakeUpstreamThread, oai: openai.OpenAI, router: RouterServer
) -> None:
    spoken = oai.audio.speech.create(model="tts-1", voice="alloy", input="Hello there")
    relayed = spoken.read()
    direct = httpx.post(
        fake.base_url("op", "openai") + "/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Hello there"},
    )
    assert relayed == direct.content and len(relayed) > 100


def test_audio_transcription_is_a_multipart_upload_routed_by_model(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    fake.script("op", rate_limited(5))
    audio = b"RIFF" + bytes(range(256)) * 8
    text = oai.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", io.BytesIO(audio), "audio/wav")
    )
    assert text.text
    sent = fake.requests()[-1]
    assert sent.provider == "ob" and audio in sent.body


def test_model_list_merges_the_upstream_list(oai: openai.OpenAI) -> None:
    ids = [model.id for model in oai.models.list()]
    assert ids, "the upstream list should be passed through"
    assert oai.models.retrieve(ids[0]).id == ids[0]
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model-anywhere")


# -- owned objects -------------------------------------------------------------------------


def test_file_upload_arrives_byte_identical_and_can_be_read_back(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    content = b'{"custom_id": "1"}\n' + bytes(range(256))
    created = oai.files.create(
        file=("data.jsonl", io.BytesIO(content), "application/jsonl"), purpose="batch"
    )
    upload = fake.requests()[-1]
    assert upload.method == "POST" and upload.path.endswith("/v1/files")
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert content in upload.body
    assert oai.files.retrieve(created.id).id == created.id
    assert oai.files.content(created.id).read() == content
    assert oai.files.delete(created.id).deleted


def test_a_create_is_not_repeated_after_a_server_error(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    fake.script("op", Error(500))
    with pytest.raises(openai.InternalServerError):
        oai.batches.create(
            input_file_id="file-abc123", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert [r.provider for r in fake.requests()] == ["op"]


def test_a_create_falls_back_when_rate_limited(
    fake: FakeUpstreamThread, oai: openai.OpenAI
) -> None:
    fake.script("op", rate_limited(5))
    raw = oai.vector_stores.with_raw_response.create(name="docs")
    assert served_by(raw) == "ob" and raw.parse().id.startswith("vs_")


# -- Anthropic -----------------------------------------------------------------------------


@pytest.mark.parametrize("primary_fails", [False, True])
def test_count_tokens_with_beta_query(
    fake: FakeUpstreamThread, ant: anthropic.Anthropic, router: RouterServer, primary_fails: bool
) -> None:
    counted = ant.messages.count_tokens(
        model="claude-sonnet-5-5", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert counted.input_tokens > 0
    if primary_fails:
        fake.script("ap", rate_limited(5))
    # Claude Code counts tokens every turn this way.
    response = httpx.post(
        router.url + "/anthropic/v1/messages/count_tokens?beta=true",
        json={"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"anthropic-version": "2023-06-01", "anthropic-beta": "token-counting-2024-11-01"},
    )
    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    seen = fake.requests()[-1]
    assert seen.path.endswith("/v1/messages/count_tokens") and seen.query == "beta=true"
    assert seen.headers["anthropic-beta"] == "token-counting-2024-11-01"
    assert seen.provider == ("ab" if primary_fails else "ap")


def test_anthropic_models_list(ant: anthropic.Anthropic) -> None:
    page = ant.models.list(limit=5)
    assert page.data and page.data[0].type == "model"
    assert ant.models.retrieve(page.data[0].id).id == page.data[0].id


def test_anthropic_batch_results_come_back_through_the_router(
    fake: FakeUpstreamThread, ant: anthropic.Anthropic, router: RouterServer
) -> None:
    batch = ant.messages.batches.create(
        requests=[
            {
                "custom_id": "one",
                "params": {
                    "model": "claude-sonnet-5-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            }
        ]
    )
    ended = ant.messages.batches.retrieve(batch.id)
    assert ended.results_url is None or ended.results_url.startswith(router.url + "/anthropic/")
    results = list(ant.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] == ["one"]
    assert fake.requests()[-1].path.endswith("/results")  # fetched via the router


def test_anthropic_messages_without_v1(fake: FakeUpstreamThread, router: RouterServer) -> None:
    # The Vercel AI SDK's createAnthropic({baseURL: ".../anthropic"}) posts to /messages.
    response = httpx.post(
        router.url + "/anthropic/messages",
        json={
            "model": "claude-sonnet-5-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200 and response.json()["type"] == "message"
    assert fake.requests()[-1].path == "/ap/v1/messages"


def test_anthropic_beta_files(ant: anthropic.Anthropic) -> None:
    uploaded = ant.beta.files.upload(file=("notes.txt", io.BytesIO(b"hello"), "text/plain"))
    assert ant.beta.files.retrieve_metadata(uploaded.id).id == uploaded.id
