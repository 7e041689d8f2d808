"""Which account a provider belongs to, and the objects each account owns.

Real upstream state (stored responses, reasoning items and their ``encrypted_content``,
files, uploads, batches, vector stores, conversations, Anthropic batches and files) exists
only in the account (organization, workspace) that created it. A provider name is its own
account unless :meth:`Accounts.set_account` puts it into another one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Accounts", "OwnedObject"]


@dataclass(frozen=True)
class OwnedObject:
    """An object as the control API lists it: its id, kind and owning account."""

    id: str
    kind: str
    account: str


@dataclass(eq=False)
class Entry:
    """A stored object: ``data`` is its JSON form (mutable, updated as it progresses);
    ``content`` the bytes of a file; ``extra`` whatever else the API needs to remember."""

    account: str
    kind: str
    data: dict[str, Any]
    content: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Accounts:
    """Provider -> account, and account-owned objects by id; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._account_of: dict[str, str] = {}
        self._entries: dict[tuple[str, str], Entry] = {}
        self._models: dict[str, tuple[str, ...]] = {}

    def account_of(self, provider: str) -> str:
        with self._lock:
            return self._account_of.get(provider, provider)

    def set_account(self, provider: str, account: str) -> None:
        if not account:
            raise ValueError("an account name must not be empty")
        with self._lock:
            self._account_of[provider] = account

    def set_models(self, provider: str, models: Sequence[str]) -> None:
        if isinstance(models, str) or not all(isinstance(m, str) and m for m in models):
            raise ValueError("models must be a list of non-empty strings")
        with self._lock:
            self._models[provider] = tuple(models)

    def models_of(self, provider: str) -> tuple[str, ...] | None:
        with self._lock:
            return self._models.get(provider)

    def add(self, entry: Entry, object_id: Any) -> Entry:
        """Store ``entry`` under ``object_id`` (the id from its JSON form, or a token)."""
        with self._lock:
            self._entries[(entry.kind, str(object_id))] = entry
        return entry

    def get(self, account: str, kind: str, object_id: str) -> Entry | None:
        """The object if it exists *in this account* (another account's is not found)."""
        with self._lock:
            entry = self._entries.get((kind, object_id))
        return entry if entry is not None and entry.account == account else None

    def owner(self, kind: str, object_id: str) -> str | None:
        with self._lock:
            entry = self._entries.get((kind, object_id))
        return None if entry is None else entry.account

    def delete(self, account: str, kind: str, object_id: str) -> bool:
        with self._lock:
            entry = self._entries.get((kind, object_id))
            if entry is None or entry.account != account:
                return False
            del self._entries[(kind, object_id)]
            return True

    def of_kind(self, account: str, kind: str) -> list[Entry]:
        """The account's objects of ``kind``, oldest first."""
        with self._lock:
            return [e for e in self._entries.values() if e.kind == kind and e.account == account]

    def objects(self, account: str | None = None) -> list[OwnedObject]:
        with self._lock:
            return [
                OwnedObject(object_id, kind, entry.account)
                for (kind, object_id), entry in self._entries.items()
                if account is None or entry.account == account
            ]

    def reset(self) -> None:
        with self._lock:
            self._account_of.clear()
            self._entries.clear()
            self._models.clear()
