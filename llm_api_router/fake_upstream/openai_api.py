"""OpenAI generation endpoints: chat, legacy completions, embeddings, moderations, audio,
images, and the model list."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from typing import Any

from .call import ApiError, Call, Reply, StreamReply
from .wire import count_tokens, hex_id, now, openai_usage, prompt_tokens

__all__ = [
    "DEFAULT_OPENAI_MODELS",
    "chat",
    "completions",
    "embeddings",
    "image_generations",
    "model",
    "models",
    "moderations",
    "speech",
    "transcriptions",
]

DEFAULT_OPENAI_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-5",
    "o3",
    "text-embedding-3-small",
    "omni-moderation-latest",
    "gpt-4o-mini-tts",
    "whisper-1",
    "gpt-image-1",
)
_MODEL_CREATED = 1_700_000_000
_EMBEDDING_DIMENSIONS = 1536
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def _chat_types(call: Call) -> None:
    call.require("model", "messages")
    body = call.object_body()
    if not isinstance(body["model"], str) or not isinstance(body["messages"], list):
        raise ApiError(400, "Invalid type for 'model' or 'messages'.", code="invalid_type")


def chat(call: Call) -> Reply | StreamReply:
    _chat_types(call)
    if call.wants_stream:
        return StreamReply()
    return Reply(
        {
            "id": hex_id("chatcmpl-", 24),
            "object": "chat.completion",
            "created": now(),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": call.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": openai_usage(call.json, count_tokens(call.text)),
            "system_fingerprint": "fp_fake",
        }
    )


def completions(call: Call) -> Reply | StreamReply:
    call.require("model", "prompt", types={"model": str})
    if call.wants_stream:
        return StreamReply()
    return Reply(
        {
            "id": hex_id("cmpl-", 24),
            "object": "text_completion",
            "created": now(),
            "model": call.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"text": call.text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": openai_usage(call.json, count_tokens(call.text)),
        }
    )


def _vector(text: str, dimensions: int) -> list[float]:
    """A deterministic pseudo-embedding of ``text``."""
    out: list[float] = []
    counter = 0
    while len(out) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 127.5) / 1275.0 for b in digest)
        counter += 1
    return out[:dimensions]


def embeddings(call: Call) -> Reply:
    call.require("model", "input", types={"model": str})
    body = call.object_body()
    raw = body["input"]
    inputs: list[Any] = raw if isinstance(raw, list) and raw else [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        inputs = [raw]  # one input given as token ids
    if any(not isinstance(i, (str, list)) or not i for i in inputs):
        raise ApiError(400, "'$.input' is invalid.", param="input", code="invalid_type")
    dimensions = body.get("dimensions", _EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or dimensions < 1:
        raise ApiError(400, "Invalid 'dimensions'.", param="dimensions", code="invalid_value")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiError(
            400,
            "Invalid value for 'encoding_format'.",
            param="encoding_format",
            code="invalid_value",
        )
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(str(t) for t in item)
        tokens += count_tokens(text)
        vector = _vector(text, dimensions)
        embedding: Any = vector
        if encoding == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return Reply(
        {
            "object": "list",
            "data": data,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def moderations(call: Call) -> Reply:
    call.require("input")
    raw = call.object_body()["input"]
    inputs = raw if isinstance(raw, list) else [raw]
    results = []
    for _ in inputs:
        results.append(
            {
                "flagged": False,
                "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
                "category_scores": dict.fromkeys(_MODERATION_CATEGORIES, 1e-06),
                "category_applied_input_types": {c: ["text"] for c in _MODERATION_CATEGORIES},
            }
        )
    body = call.object_body()
    model = body.get("model") if isinstance(body.get("model"), str) else "omni-moderation-latest"
    return Reply({"id": hex_id("modr-", 32), "model": model, "results": results})


def _mp3(frames: int) -> bytes:
    """Silent MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz): bytes any player accepts."""
    frame = b"\xff\xfb\x90\x64" + bytes(413)
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * frames


def _wav(samples: int) -> bytes:
    """A 24 kHz mono 16-bit PCM WAV file of silence."""
    data = bytes(2 * samples)
    fmt = struct.pack("<HHIIHH", 1, 1, 24_000, 48_000, 2, 16)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    riff += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


_AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def speech(call: Call) -> Reply:
    call.require("model", "input", "voice")
    body = call.object_body()
    audio_format = body.get("response_format", "mp3")
    if not isinstance(audio_format, str) or audio_format not in _AUDIO_TYPES:
        raise ApiError(
            400,
            "Invalid value for 'response_format'.",
            param="response_format",
            code="invalid_value",
        )
    words = count_tokens(str(body["input"]))
    if audio_format == "wav":
        audio = _wav(2400 * words)
    elif audio_format == "pcm":
        audio = bytes(4800 * words)
    else:
        audio = _mp3(4 * words)
    return Reply(body=audio, content_type=_AUDIO_TYPES[audio_format])


def transcriptions(call: Call) -> Reply:
    form = call.form()
    for name in ("file", "model"):
        if name not in form:
            raise ApiError(
                400,
                f"Missing required parameter: '{name}'.",
                param=name,
                code="missing_required_parameter",
            )
    response_format = form["response_format"].text if "response_format" in form else "json"
    if response_format in ("text", "srt", "vtt"):
        return Reply(body=call.text.encode(), content_type="text/plain; charset=utf-8")
    tokens = count_tokens(call.text)
    body: dict[str, Any] = {
        "text": call.text,
        "usage": {
            "type": "tokens",
            "input_tokens": tokens,
            "output_tokens": tokens,
            "total_tokens": 2 * tokens,
        },
    }
    if response_format == "verbose_json":
        body.update(task="transcribe", language="english", duration=1.0, segments=[])
    return Reply(body)


def _png() -> bytes:
    """A valid 1x1 transparent PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def image_generations(call: Call) -> Reply:
    call.require("prompt")
    body = call.object_body()
    count = body.get("n", 1)
    if not isinstance(count, int) or not 1 <= count <= 10:
        raise ApiError(400, "Invalid 'n'.", param="n", code="invalid_value")
    image = base64.b64encode(_png()).decode()
    data = [{"b64_json": image, "revised_prompt": body["prompt"]} for _ in range(count)]
    tokens = prompt_tokens({"prompt": body["prompt"]})
    return Reply(
        {
            "created": now(),
            "data": data,
            "output_format": "png",
            "size": body.get("size", "1024x1024"),
            "usage": {
                "input_tokens": tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": tokens},
                "output_tokens": 272 * count,
                "total_tokens": tokens + 272 * count,
            },
        }
    )


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


def models(call: Call) -> Reply:
    names = call.models if call.models is not None else DEFAULT_OPENAI_MODELS
    return Reply({"object": "list", "data": [_model(name) for name in names]})


def model(call: Call) -> Reply:
    names = call.models if call.models is not None else DEFAULT_OPENAI_MODELS
    model_id = call.params["id"]
    if model_id not in names:
        raise ApiError(
            404,
            f"The model '{model_id}' does not exist",
            param="model",
            code="model_not_found",
            error_type="invalid_request_error",
        )
    return Reply(_model(model_id))
