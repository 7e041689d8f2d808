"""Accounts and faults of the fake upstream on the endpoints beyond chat: objects are seen
through every provider of their account and nowhere else; every behaviour applies to every
endpoint; Responses streams fail in-band the way the real API does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import openai
import pytest

from llm_api_router.fake_upstream import (
    Drop,
    Error,
    FakeUpstreamThread,
    Hang,
    Stream,
    behaviour_from_dict,
    behaviour_to_dict,
    insufficient_quota,
    overloaded,
    rate_limited,
    response_failed,
)


def _openai(fake: FakeUpstreamThread, provider: str, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fake.base_url(provider, "openai"), api_key="x", max_retries=0, **options
    )


def _anthropic(fake: FakeUpstreamThread, provider: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=fake.base_url(provider, "anthropic"), api_key="x", max_retries=0
    )


def _sse_names(fake: FakeUpstreamThread, provider: str, payload: object) -> list[dict[str, Any]]:
    url = fake.base_url(provider, "openai") + "/responses"
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    events = []
    for block in text.strip("\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"]
        events.append(data)
    return events


# --------------------------------------------------------------------------- accounts


def test_two_providers_of_one_account_share_files_a_third_does_not(
    fake: FakeUpstreamThread,
) -> None:
    fake.set_account("k1", "org-a")
    fake.set_account("k2", "org-a")
    assert (fake.account_of("k1"), fake.account_of("k3")) == ("org-a", "k3")
    with _openai(fake, "k1") as k1, _openai(fake, "k2") as k2, _openai(fake, "k3") as k3:
        created = k1.files.create(file=("a.txt", b"shared bytes"), purpose="assistants")
        assert k2.files.retrieve(created.id).id == created.id
        assert k2.files.content(created.id).read() == b"shared bytes"
        with pytest.raises(openai.NotFoundError, match="No such File object"):
            k3.files.retrieve(created.id)
        assert [f.id for f in k3.files.list()] == []
        store = k2.vector_stores.create(name="kb", file_ids=[created.id])
        assert k1.vector_stores.retrieve(store.id).file_counts.total == 1
        with pytest.raises(openai.NotFoundError):
            k3.vector_stores.retrieve(store.id)
    objects = {(o.id, o.kind, o.account) for o in fake.objects("org-a")}
    assert (created.id, "file", "org-a") in objects
    assert (store.id, "vector_store", "org-a") in objects
    assert fake.objects("k3") == []


def test_responses_state_belongs_to_the_account(fake: FakeUpstreamThread) -> None:
    fake.set_account("k1", "org-a")
    fake.set_account("k2", "org-a")
    with _openai(fake, "k1") as k1, _openai(fake, "k2") as k2, _openai(fake, "other") as other:
        first = k1.responses.create(
            model="gpt-5", input="hi", include=["reasoning.encrypted_content"]
        )
        reasoning = first.output[0]
        assert reasoning.type == "reasoning"
        # previous_response_id: found through a sibling key, not through another account
        k2.responses.create(model="gpt-5", input="more", previous_response_id=first.id)
        with pytest.raises(openai.BadRequestError) as excinfo:
            other.responses.create(model="gpt-5", input="more", previous_response_id=first.id)
        assert excinfo.value.code == "previous_response_not_found"
        # encrypted reasoning: verified by a sibling, rejected by another account
        item = reasoning.to_dict()
        k2.responses.create(model="gpt-5", input=[item], store=False)
        with pytest.raises(openai.BadRequestError) as excinfo:
            other.responses.create(model="gpt-5", input=[item], store=False)
        assert excinfo.value.code == "invalid_encrypted_content"
        # a stored reasoning item referred to by id only
        by_id = {"type": "reasoning", "id": reasoning.id, "summary": []}
        k2.responses.create(model="gpt-5", input=[by_id])
        with pytest.raises(openai.NotFoundError, match=f"Item with id '{reasoning.id}'"):
            other.responses.create(model="gpt-5", input=[by_id])
        assert k2.responses.retrieve(first.id).id == first.id
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(first.id)


def test_anthropic_objects_belong_to_the_workspace(fake: FakeUpstreamThread) -> None:
    fake.set_account("a1", "ws")
    fake.set_account("a2", "ws")
    with _anthropic(fake, "a1") as a1, _anthropic(fake, "a2") as a2, _anthropic(fake, "a3") as a3:
        batch = a1.messages.batches.create(
            requests=[{"custom_id": "x", "params": {"model": "m", "max_tokens": 1, "messages": []}}]
        )
        assert a2.messages.batches.retrieve(batch.id).id == batch.id
        with pytest.raises(anthropic.NotFoundError):
            a3.messages.batches.retrieve(batch.id)
        uploaded = a2.beta.files.upload(file=("n.txt", b"note", "text/plain"))
        assert a1.beta.files.download(uploaded.id).read() == b"note"
        with pytest.raises(anthropic.NotFoundError):
            a3.beta.files.download(uploaded.id)


def test_control_api_accounts_models_objects(fake: FakeUpstreamThread) -> None:
    def post(action: str, payload: object) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"{fake.url}/_control/{action}", data=json.dumps(payload).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    assert post("account", {"provider": "k1", "account": "org"})[0] == 200
    assert post("account", {"provider": "k2", "account": "org"})[0] == 200
    assert post("models", {"provider": "k1", "models": ["m-1"]})[0] == 200
    assert post("account", {"provider": "k1"})[0] == 400
    assert post("models", {"provider": "k1", "models": "m-1"})[0] == 400
    with _openai(fake, "k1") as k1, _openai(fake, "k2") as k2:
        assert [m.id for m in k1.models.list()] == ["m-1"]
        created = k1.conversations.create()
        assert k2.conversations.retrieve(created.id).id == created.id
    with urllib.request.urlopen(f"{fake.url}/_control/objects?account=org", timeout=5) as resp:
        listed = json.loads(resp.read())
    assert listed == [{"id": created.id, "kind": "conversation", "account": "org"}]
    assert post("reset", {})[0] == 200
    assert fake.objects() == []
    assert fake.account_of("k1") == "k1"


# --------------------------------------------------------------------------- faults


def test_rate_limit_on_embeddings(fake: FakeUpstreamThread) -> None:
    fake.script("k1", rate_limited(retry_after=2, retry_after_ms=2000))
    with _openai(fake, "k1") as k1:
        with pytest.raises(openai.RateLimitError) as excinfo:
            k1.embeddings.create(model="text-embedding-3-small", input="x")
        assert excinfo.value.response.headers["retry-after"] == "2"
        assert excinfo.value.response.headers["retry-after-ms"] == "2000"
        assert excinfo.value.code == "rate_limit_exceeded"
        assert k1.embeddings.create(model="text-embedding-3-small", input="x").data
    assert [r.operation for r in fake.requests("k1")] == ["embeddings", "embeddings"]


def test_every_behaviour_on_other_endpoints(fake: FakeUpstreamThread) -> None:
    fake.script(
        "k1",
        insufficient_quota(),
        Error(500),
        Drop(),
        Hang(5),
    )
    with _openai(fake, "k1") as k1:
        with pytest.raises(openai.RateLimitError) as quota:
            k1.responses.create(model="gpt-5", input="x")
        assert quota.value.code == "insufficient_quota"
        with pytest.raises(openai.InternalServerError):
            k1.files.create(file=("a.txt", b"x"), purpose="assistants")
        with pytest.raises(openai.APIConnectionError):
            k1.batches.list()
        with pytest.raises(openai.APITimeoutError):
            k1.with_options(timeout=0.3).models.list()
    assert fake.objects() == []  # nothing was created by the failed create
    fake.script("a1", overloaded())
    with _anthropic(fake, "a1") as a1, pytest.raises(anthropic.APIStatusError) as excinfo:
        a1.messages.count_tokens(model="m", messages=[{"role": "user", "content": "x"}])
    assert excinfo.value.status_code == 529
    body: Any = excinfo.value.body
    assert body["error"]["type"] == "overloaded_error"


def test_responses_stream_fails_before_output(fake: FakeUpstreamThread) -> None:
    fake.script("k1", response_failed(at=0, code="rate_limit_exceeded"))
    events = _sse_names(fake, "k1", {"model": "gpt-5", "input": "x", "stream": True})
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert [e["sequence_number"] for e in events] == [0, 1, 2, 3]
    assert events[2]["code"] == "rate_limit_exceeded"
    failed = events[3]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "rate_limit_exceeded"
    assert "try again in" in failed["error"]["message"]  # what the Codex CLI parses
    assert failed["output"] == []
    assert failed["id"] == events[0]["response"]["id"]

    fake.script("k1", response_failed(at=0, code="server_error"))
    with _openai(fake, "k1") as k1:
        with k1.responses.create(model="gpt-5", input="x", stream=True) as stream:
            types = [e.type for e in stream]
        assert types[-2:] == ["error", "response.failed"]
        fake.script("k1", response_failed(at=0))
        with (
            pytest.raises(RuntimeError, match=r"response\.completed"),
            k1.responses.stream(model="gpt-5", input="x") as helper,
        ):
            helper.get_final_response()


def test_responses_stream_fails_after_some_output(fake: FakeUpstreamThread) -> None:
    fake.script("k1", response_failed(at=2, code="server_error", events="failed"))
    events = _sse_names(fake, "k1", {"model": "gpt-5", "input": "x", "stream": True})
    types = [e["type"] for e in events]
    assert types.count("response.output_text.delta") == 2
    assert types[-1] == "response.failed"
    assert "error" not in types
    failed = events[-1]["response"]
    assert failed["error"]["code"] == "server_error"
    assert [item["type"] for item in failed["output"]] == ["message"]
    # The stored response says what happened.
    with _openai(fake, "k1") as k1:
        assert k1.responses.retrieve(failed["id"]).status == "failed"

    fake.script("k1", response_failed(at=1, code="server_error", events="error"))
    events = _sse_names(fake, "k1", {"model": "gpt-5", "input": "x", "stream": True})
    assert [e["type"] for e in events][-2:] == ["response.output_text.delta", "error"]


def test_responses_stream_cut_stall_and_malformed(fake: FakeUpstreamThread) -> None:
    fake.script("k1", Stream(cut_after=1), Stream(stall_after=0), Stream(malformed_at=1))
    with _openai(fake, "k1") as k1:
        seen: list[str] = []
        with (
            pytest.raises(openai.APIConnectionError),
            k1.responses.create(model="gpt-5", input="x", stream=True) as stream,
        ):
            seen.extend(e.type for e in stream)
        assert seen[:2] == ["response.created", "response.in_progress"]
        assert seen.count("response.output_text.delta") == 1
        assert "response.completed" not in seen
        with (
            pytest.raises(openai.APITimeoutError),
            k1.with_options(timeout=0.3).responses.create(
                model="gpt-5", input="x", stream=True
            ) as stalled,
        ):
            list(stalled)
        with (
            pytest.raises(json.JSONDecodeError),
            k1.responses.create(model="gpt-5", input="x", stream=True) as broken,
        ):
            list(broken)
    assert fake.wait_for_disconnect("k1") is not None


def test_stream_behaviour_on_completions_and_other_endpoints(fake: FakeUpstreamThread) -> None:
    fake.script("k1", Stream(text="abc", chunks=3, error_at=1), Stream(text="xyz"))
    with (
        _openai(fake, "k1") as k1,
        pytest.raises(openai.APIError, match="Overloaded"),
        k1.completions.create(model="m", prompt="p", stream=True) as stream,
    ):
        list(stream)
    url = fake.base_url("k1", "openai") + "/embeddings"
    req = urllib.request.Request(url, data=b'{"model": "m", "input": "x"}', method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert b"chat.completion.chunk" in resp.read()


def test_new_behaviour_fields_round_trip() -> None:
    for behaviour in (
        response_failed(at=3, code="rate_limit_exceeded", events="failed"),
        Stream(error_at=0, error_code="server_error", responses_failure="error"),
    ):
        assert behaviour_from_dict(behaviour_to_dict(behaviour)) == behaviour
    data = behaviour_to_dict(response_failed())
    assert (data["kind"], data["error_at"], data["error_code"]) == ("stream", 0, "server_error")
    with pytest.raises(ValueError, match="responses_failure"):
        Stream(responses_failure="both")  # type: ignore[arg-type]


def test_scripts_for_one_operation(fake: FakeUpstreamThread) -> None:
    fake.script("a1", rate_limited(retry_after=5), operation="messages.count_tokens")
    fake.set_default("a1", overloaded(), operation="models.list")
    messages: Any = [{"role": "user", "content": "x"}]
    with _anthropic(fake, "a1") as a1:
        # messages is not affected by the count_tokens script ...
        assert a1.messages.create(model="m", max_tokens=4, messages=messages).content
        with pytest.raises(anthropic.RateLimitError):
            a1.messages.count_tokens(model="m", messages=messages)
        assert a1.messages.count_tokens(model="m", messages=messages).input_tokens == 1
        with pytest.raises(anthropic.APIStatusError) as excinfo:
            a1.models.list()
        assert excinfo.value.status_code == 529
    # ... while the provider's own queue still applies to every endpoint.
    fake.script("a1", Error(500))
    with _anthropic(fake, "a1") as a1, pytest.raises(anthropic.InternalServerError):
        a1.messages.count_tokens(model="m", messages=messages)
    with pytest.raises(ValueError, match="unknown operation"):
        fake.script("a1", Error(500), operation="message.count_tokens")
    req = urllib.request.Request(
        f"{fake.url}/_control/script",
        data=json.dumps(
            {"provider": "k1", "operation": "embeddings", "behaviours": [{"kind": "drop"}]}
        ).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    with _openai(fake, "k1") as k1:
        assert k1.models.list().data
        with pytest.raises(openai.APIConnectionError):
            k1.embeddings.create(model="m", input="x")
