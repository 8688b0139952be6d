"""Passwords of any length and script count in full (issue 4 §2)."""

from __future__ import annotations

import bcrypt
import pytest
from taskflow_auth.passwords import PasswordHasher

hasher = PasswordHasher(rounds=4)


@pytest.mark.parametrize(
    "password",
    [
        "a" * 72,  # exactly bcrypt's limit
        "a" * 73,
        "a" * 128,
        "é" * 36,  # 72 bytes of 2-byte characters
        "😀" * 18 + "x",  # 73 bytes: 4-byte characters and one more
        "😀" * 128,  # 512 bytes
    ],
)
def test_long_and_multibyte_passwords_hash_and_verify(password: str) -> None:
    hashed = hasher.hash(password)
    assert hasher.verify(password, hashed)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a" * 72 + "1", "a" * 72 + "2"),
        ("a" * 100 + "x", "a" * 100 + "y"),
        ("😀" * 18 + "a", "😀" * 18 + "b"),
    ],
)
def test_passwords_differing_after_byte_72_do_not_verify_for_each_other(first: str, second: str) -> None:
    assert len(first.encode()) > 72
    assert not hasher.verify(second, hasher.hash(first))


def test_composed_and_decomposed_accents_are_the_same_password() -> None:
    composed, decomposed = "caf\u00e9-password", "cafe\u0301-password"
    assert hasher.verify(decomposed, hasher.hash(composed))


def test_a_missing_hash_costs_one_bcrypt_check_at_the_same_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[bytes] = []
    original = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return original(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    real = hasher.hash("correct horse battery")
    assert hasher.verify("whatever password", None) is False
    assert hasher.verify("wrong password!", real) is False
    assert len(checked) == 2
    assert checked[0][:7] == checked[1][:7] == b"$2b$04$"  # same algorithm and cost factor
