"""Ids of account-owned objects, found in answers and in requests (SPEC section 10), sans-IO.

A stored response, a reasoning item or its ``encrypted_content``, a file, an upload, a batch,
a vector store or a conversation exists only in the account that created it.  The router
records the owner of every such id it hands out and routes a later request that refers to
one (in its path or body) to that account.  Finding them is a byte scan with one compiled
pattern per family, so requests that refer to nothing cost next to nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["OwnedIds", "encrypted_key"]

#: At most this many ids are taken from one answer or request.
MAX_IDS = 256
_ENCRYPTED = re.compile(rb'"encrypted_content"\s*:\s*"([^"\\]{16,})"')


def encrypted_key(blob: bytes) -> str:
    """The record key of an ``encrypted_content`` blob (a digest: blobs are large)."""
    return "enc:" + hashlib.blake2b(blob, digest_size=16).hexdigest()


class OwnedIds:
    """The owned-object ids of one family: which prefixes mark them."""

    __slots__ = ("_in_json", "_in_path")

    def __init__(self, prefixes: Iterable[str]) -> None:
        alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
        self._in_json = re.compile(rb'"((?:' + alternatives.encode() + rb")[A-Za-z0-9_-]{6,200})\"")
        self._in_path = re.compile(r"^(?:" + alternatives + r")[A-Za-z0-9_-]{6,200}$")

    def in_body(self, body: bytes) -> list[str]:
        """Owned ids quoted anywhere in a JSON body (answer or request), and digests of its
        ``encrypted_content`` blobs; first seen first, without repeats."""
        found: dict[str, None] = {}
        for match in self._in_json.finditer(body):
            found[match.group(1).decode()] = None
            if len(found) >= MAX_IDS:
                return list(found)
        for match in _ENCRYPTED.finditer(body):
            found[encrypted_key(match.group(1))] = None
            if len(found) >= MAX_IDS:
                break
        return list(found)

    def in_path(self, path: str) -> list[str]:
        """Owned ids among the segments of a path below the family (``files/file-abc/content``)."""
        return [segment for segment in path.split("/") if self._in_path.match(segment)]
