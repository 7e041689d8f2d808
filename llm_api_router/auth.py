"""Router keys: who may use the API routes.  Compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

__all__ = ["RouterKeys"]


class RouterKeys:
    """The set of accepted router keys (empty: the API is open).

    A client presents a key as ``Authorization: Bearer <key>`` (what the OpenAI SDK sends)
    or ``x-api-key: <key>`` (what the Anthropic SDK sends); either works on every route.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode() for key in keys if key)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allows(self, headers: Mapping[str, str]) -> bool:
        """True when the request carries an accepted key (always, when none is configured)."""
        if not self._keys:
            return True
        presented = [headers.get("x-api-key", "")]
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            presented.append(token.strip())
        matched = False
        # Compare every presented value with every key, without stopping early, so the
        # time taken says nothing about which key (or how much of one) matched.
        for value in presented:
            candidate = value.encode()
            for key in self._keys:
                matched |= hmac.compare_digest(candidate, key)
        return matched
