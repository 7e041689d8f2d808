"""Where a configured secret may be replaced: the one rule, for text and for bytes.

Two properties are wanted at once: a real key never shows, and unrelated text is never
mangled.  Replacing a key wherever its text appears gives the first but not the second
when keys are short (``"api_key": "test"`` is usual for local servers such as vLLM or
Ollama, and would turn ``latest-test-model`` into ``la[REDACTED]-[REDACTED]-model``).

The rule:

* a secret of :data:`MIN_SUBSTRING_LENGTH` characters or more is replaced wherever it
  appears, even inside a longer word: text that long does not occur by chance;
* a shorter secret is replaced only where it is a whole *token*.  A token is a maximal run
  of key characters: ASCII letters, digits, ``-`` and ``_``, and ``.`` between two of them
  (``gpt-4.1``, ``test.example.com`` are one token; the ``.`` ending a sentence is not
  part of one).  So ``Bearer test``, ``"test"``, ``key=test&`` and ``test.`` lose the key,
  while ``latest-test-model``, ``contest`` and ``test.example.com`` stay as they are.

Secrets are matched longest first, so a key that contains another is replaced whole.
:class:`SecretRedactor` applies the rule to ``str`` and to ``bytes`` (an upstream answer
that echoes a provider key); it knows only the configured secrets, nothing of credential
shapes in general (that is the log redactor's business: model output may quote ``sk-...``
examples, and must reach the client intact).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MIN_SUBSTRING_LENGTH", "REDACTED", "SecretRedactor", "secret_pattern"]

REDACTED = "[REDACTED]"

#: Secrets at least this long are redacted anywhere, shorter ones only as whole tokens.
MIN_SUBSTRING_LENGTH = 16

_KEY_CHAR = "[A-Za-z0-9_-]"
# A short secret must not continue a token on either side: no key character next to it,
# and no '.' that joins it to one.
_TOKEN_START = rf"(?<!{_KEY_CHAR})(?<!{_KEY_CHAR}\.)"
_TOKEN_END = rf"(?!{_KEY_CHAR})(?!\.{_KEY_CHAR})"


def secret_pattern(secrets: Iterable[str]) -> str | None:
    """The regular expression (as ``str``) matching ``secrets`` by the rule, or None."""
    unique = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not unique:
        return None
    alternatives = [
        (
            re.escape(secret)
            if len(secret) >= MIN_SUBSTRING_LENGTH
            else f"{_TOKEN_START}{re.escape(secret)}{_TOKEN_END}"
        )
        for secret in unique
    ]
    return "|".join(alternatives)


class SecretRedactor:
    """Replaces configured secrets in text and bytes by :data:`REDACTED` (see the module doc)."""

    __slots__ = ("_bytes", "_text")

    def __init__(self, secrets: Iterable[str]) -> None:
        pattern = secret_pattern(secrets)
        self._text = None if pattern is None else re.compile(pattern)
        # The same expression over UTF-8 bytes: non-ASCII characters of a secret become
        # their byte sequences, and the lookarounds only ever look at ASCII characters.
        self._bytes = (
            None if pattern is None else re.compile(pattern.encode("utf-8", "surrogatepass"))
        )

    def __bool__(self) -> bool:
        return self._text is not None

    def __call__(self, text: str) -> str:
        return text if self._text is None else self._text.sub(REDACTED, text)

    def scrub_bytes(self, data: bytes) -> bytes:
        """``data`` with every secret replaced (bytes of any encoding compatible with ASCII)."""
        if self._bytes is None:
            return data
        return self._bytes.sub(REDACTED.encode(), data)
