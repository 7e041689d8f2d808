"""RouterKeys: which requests carry an accepted router key, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import pytest

from llm_api_router import auth
from llm_api_router.auth import RouterKeys

KEY = "rk-unit-router-key-0123456789"
OTHER = "rk-unit-second-key-abcdefghij"

Calls = list[tuple[bytes | str, bytes | str]]


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Record every hmac.compare_digest call RouterKeys makes (the real one still decides)."""
    calls: Calls = []
    real: Callable[..., bool] = hmac.compare_digest

    def recording(a: bytes | str, b: bytes | str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    return calls


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def test_no_keys_means_open() -> None:
    keys = RouterKeys([])
    assert not keys.enabled
    assert keys.allows({})
    assert keys.allows({"authorization": "Bearer anything", "x-api-key": "whatever"})


def test_empty_strings_are_not_keys() -> None:
    keys = RouterKeys(["", ""])
    assert not keys.enabled
    assert keys.allows({})
    keys = RouterKeys(["", KEY])
    assert keys.enabled
    assert not keys.allows({"x-api-key": ""})
    assert not keys.allows({"authorization": "Bearer "})


def test_bearer_and_x_api_key_both_accepted() -> None:
    keys = RouterKeys([KEY])
    assert keys.enabled
    assert keys.allows({"authorization": f"Bearer {KEY}"})
    assert keys.allows({"x-api-key": KEY})


def test_bearer_scheme_is_case_insensitive() -> None:
    keys = RouterKeys([KEY])
    assert keys.allows({"authorization": f"bearer {KEY}"})
    assert keys.allows({"authorization": f"BEARER {KEY}"})


def test_missing_or_wrong_credentials_rejected() -> None:
    keys = RouterKeys([KEY])
    assert not keys.allows({})
    assert not keys.allows({"authorization": "Bearer rk-wrong"})
    assert not keys.allows({"x-api-key": "rk-wrong"})
    assert not keys.allows({"authorization": KEY})  # no scheme
    assert not keys.allows({"authorization": f"Basic {KEY}"})
    assert not keys.allows({"authorization": f"Token {KEY}"})


def test_prefix_and_extension_of_the_key_rejected() -> None:
    keys = RouterKeys([KEY])
    for candidate in (KEY[:-1], KEY[:1], KEY[: len(KEY) // 2], KEY + "x", "x" + KEY):
        assert not keys.allows({"x-api-key": candidate}), candidate
        assert not keys.allows({"authorization": f"Bearer {candidate}"}), candidate


def test_same_length_wrong_key_rejected() -> None:
    keys = RouterKeys([KEY])
    wrong_last = KEY[:-1] + ("0" if KEY[-1] != "0" else "1")
    wrong_first = ("X" if KEY[0] != "X" else "Y") + KEY[1:]
    for candidate in (wrong_last, wrong_first, KEY.upper()):
        assert len(candidate) == len(KEY)
        assert not keys.allows({"x-api-key": candidate})
        assert not keys.allows({"authorization": f"Bearer {candidate}"})


def test_any_configured_key_is_accepted() -> None:
    keys = RouterKeys([KEY, OTHER])
    assert keys.allows({"x-api-key": KEY})
    assert keys.allows({"x-api-key": OTHER})
    assert keys.allows({"authorization": f"Bearer {OTHER}"})
    assert not keys.allows({"x-api-key": KEY + OTHER})


def test_a_right_key_in_either_header_is_enough() -> None:
    keys = RouterKeys([KEY])
    assert keys.allows({"x-api-key": "wrong", "authorization": f"Bearer {KEY}"})
    assert keys.allows({"x-api-key": KEY, "authorization": "Bearer wrong"})


def test_non_ascii_presented_key_is_rejected_not_an_error() -> None:
    keys = RouterKeys([KEY])
    assert not keys.allows({"x-api-key": "ключ-é-\u00ff"})
    assert not keys.allows({"authorization": "Bearer \u00e9\u00e8"})


def test_non_ascii_configured_key_works() -> None:
    keys = RouterKeys(["clé-secrète-ü"])
    assert keys.allows({"x-api-key": "clé-secrète-ü"})
    assert not keys.allows({"x-api-key": "cle-secrete-u"})


def test_compare_digest_used_for_every_configured_key(compare_calls: Calls) -> None:
    keys = RouterKeys([KEY, OTHER])
    assert keys.allows({"x-api-key": KEY})
    pairs = [{_as_bytes(a), _as_bytes(b)} for a, b in compare_calls]
    # The match itself went through compare_digest ...
    assert {KEY.encode()} in pairs
    # ... and so did the comparison with the other configured key.
    assert {KEY.encode(), OTHER.encode()} in pairs


def test_compare_digest_decides_a_rejection(compare_calls: Calls) -> None:
    keys = RouterKeys([KEY])
    wrong = KEY[:-1] + "Z"
    assert not keys.allows({"authorization": f"Bearer {wrong}"})
    assert compare_calls, "a wrong key must be judged by hmac.compare_digest"
    assert all(KEY.encode() in (_as_bytes(a), _as_bytes(b)) for a, b in compare_calls)
    assert any(wrong.encode() in (_as_bytes(a), _as_bytes(b)) for a, b in compare_calls)


def test_no_early_exit_on_first_matching_key(compare_calls: Calls) -> None:
    keys = RouterKeys([KEY, OTHER, "rk-third-key-zzzzzzzzzzzzzzz"])
    assert keys.allows({"x-api-key": KEY})
    configured = {KEY.encode(), OTHER.encode(), b"rk-third-key-zzzzzzzzzzzzzzz"}
    seen = set()
    for a, b in compare_calls:
        seen.update({_as_bytes(a), _as_bytes(b)} & configured)
    assert seen == configured


def test_comparison_is_constant_time_even_without_a_match(compare_calls: Calls) -> None:
    keys = RouterKeys([KEY, OTHER])
    assert not keys.allows({"x-api-key": "nope", "authorization": "Bearer nada"})
    configured = {KEY.encode(), OTHER.encode()}
    seen = set()
    for a, b in compare_calls:
        seen.update({_as_bytes(a), _as_bytes(b)} & configured)
    assert seen == configured


def test_no_secret_in_repr() -> None:
    keys = RouterKeys([KEY, OTHER])
    assert KEY not in repr(keys)
    assert OTHER not in repr(keys)
    assert KEY not in str(keys)
