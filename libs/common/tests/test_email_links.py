"""Tokens of email-verification links (DESIGN §4 auth): derived, never stored."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from taskflow_common.email_links import link_token, load_key, new_nonce, token_hash


def test_a_missing_key_is_generated_once_even_by_two_services_at_once(tmp_path: Path) -> None:
    path = tmp_path / "var" / "email-link.key"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_key(path, generate_missing=True), range(8)))
    assert len(keys) == 1 and len(keys.pop()) == 32
    assert path.stat().st_mode & 0o077 == 0  # the owner's only


def test_production_never_generates_a_key_and_refuses_a_short_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_key(tmp_path / "missing.key", generate_missing=False)
    short = tmp_path / "short.key"
    short.write_text("00" * 16)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        load_key(short, generate_missing=False)


def test_the_token_depends_on_every_part_and_only_the_key_holder_can_derive_it() -> None:
    key, other_key = bytes(range(32)), bytes(32)
    parts = {"user_id": "u1", "email": "ada@example.com", "nonce": new_nonce(), "expires_at": "2026-12-04T00:00:00.000Z"}
    token = link_token(key, **parts)
    assert len(token) == 43 and token == link_token(key, **parts)
    assert link_token(other_key, **parts) != token
    for name in parts:
        assert link_token(key, **{**parts, name: parts[name] + "x"}) != token, name
    assert token_hash(token) != token and len(token_hash(token)) == 64
