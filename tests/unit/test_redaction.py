"""redaction.py: a configured key never shows, and unrelated text is never mangled."""

from __future__ import annotations

import random
import re
import string

import pytest

from llm_api_router.logs import Redactor
from llm_api_router.redaction import MIN_SUBSTRING_LENGTH, REDACTED, SecretRedactor

SHORT_KEYS = ("test", "x", "key1", "local", "sk", "a.b")
LONG_KEY = "sk-proj-SENTINEL-0123456789abcdef"

# Where a key shows up when something quotes a credential: headers, JSON, URLs, prose.
CREDENTIAL_CONTEXTS = (
    "{}",
    "Bearer {}",
    "Authorization: Bearer {}",
    "x-api-key: {}",
    '{{"api_key": "{}"}}',
    "https://host/v1?key={}&other=1",
    "Incorrect API key provided: {}.",
    "key '{}', rejected",
    "({})",
    "{}\nnext line",
    "tab\t{}\t",
    "ключ {} ключ",
)

# Text in which the short keys appear only inside longer tokens.
UNRELATED = (
    "latest-test-model",
    "context_length_exceeded",
    "contest attested testing",
    "x-request-id: abc",
    "max_tokens exceeded: 4096 > xlarge",
    "test.example.com",
    "gpt-4.1-mini-test",
    "local_model key10 key1x skeleton task",
    "prefix-a.b.c suffix",
    "my_test_var",
)


@pytest.mark.parametrize("key", [*SHORT_KEYS, LONG_KEY])
@pytest.mark.parametrize("context", CREDENTIAL_CONTEXTS)
def test_a_key_quoted_as_a_credential_never_shows(key: str, context: str) -> None:
    text = context.format(key)
    redacted = SecretRedactor([key])(text)
    assert redacted == context.format(REDACTED)
    scrubbed = SecretRedactor([key]).scrub_bytes(text.encode())
    assert scrubbed == redacted.encode()


@pytest.mark.parametrize("text", UNRELATED)
def test_short_keys_never_mangle_unrelated_text(text: str) -> None:
    assert SecretRedactor(SHORT_KEYS)(text) == text
    assert SecretRedactor(SHORT_KEYS).scrub_bytes(text.encode()) == text.encode()
    # The log redactor follows the same rule for configured keys.
    assert Redactor(SHORT_KEYS)(text) == text


def test_the_issue_examples() -> None:
    assert Redactor(["test"])("model latest-test-model") == "model latest-test-model"
    assert Redactor(["x"])("code context_length_exceeded") == "code context_length_exceeded"
    assert Redactor(["test"])("Bearer test") == f"Bearer {REDACTED}"


def test_long_keys_are_redacted_even_inside_words() -> None:
    assert len(LONG_KEY) >= MIN_SUBSTRING_LENGTH
    redact = SecretRedactor([LONG_KEY])
    assert redact(f"glued{LONG_KEY}glued") == f"glued{REDACTED}glued"
    assert redact.scrub_bytes(f"a{LONG_KEY}_b".encode()) == f"a{REDACTED}_b".encode()


def test_a_key_that_contains_another_is_replaced_whole() -> None:
    redact = SecretRedactor(["test", "test-key-extended-0001", "key1"])
    assert redact("k=test-key-extended-0001 and test") == f"k={REDACTED} and {REDACTED}"


def tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*", text)


def test_every_occurrence_of_random_keys_is_gone() -> None:
    """Long keys vanish as substrings, short ones as tokens; other tokens are untouched."""
    rng = random.Random(9)
    alphabet = string.ascii_letters + string.digits + "-_"
    for _ in range(200):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(8)]
        separators = [rng.choice(" \n\"':,;=&/()[]{}") for _ in range(9)]
        pieces = [key if i % 3 == 0 else w for i, w in enumerate(words)]
        text = "".join(s + p for s, p in zip(separators, pieces, strict=False)) + separators[-1]
        redacted = SecretRedactor([key])(text)
        if len(key) >= MIN_SUBSTRING_LENGTH:
            assert key not in redacted, (key, text, redacted)
        else:
            assert key not in tokens(redacted), (key, text, redacted)
            kept = [t for t in tokens(text) if t != key]
            assert [t for t in tokens(redacted) if t != "REDACTED"] == kept
        assert SecretRedactor([key]).scrub_bytes(text.encode()) == redacted.encode()


def test_no_secrets_changes_nothing() -> None:
    redact = SecretRedactor(["", ""])
    assert not redact
    assert redact("Bearer sk-anything-at-all-123") == "Bearer sk-anything-at-all-123"
    assert redact.scrub_bytes(b"\xff\x00 raw") == b"\xff\x00 raw"


def test_non_ascii_keys_and_bytes() -> None:
    key = "schlüssel"
    redact = SecretRedactor([key])
    assert redact(f"key {key}!") == f"key {REDACTED}!"
    assert redact.scrub_bytes(f"key {key}!".encode()) == f"key {REDACTED}!".encode()
    # Invalid UTF-8 around the key does not stop the bytes form.
    assert redact.scrub_bytes(b"\xff " + key.encode() + b" \xfe") == (
        b"\xff " + REDACTED.encode() + b" \xfe"
    )


def test_the_log_redactor_scrubs_bytes_with_credential_shapes_too() -> None:
    redact = Redactor(["test"])
    assert redact.scrub_bytes(b"Bearer test") == b"Bearer " + REDACTED.encode()
    assert REDACTED.encode() in redact.scrub_bytes(b"auth sk-unconfigured-0123456789")
    assert redact.scrub_bytes(b"latest-test-model") == b"latest-test-model"
