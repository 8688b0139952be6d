"""Signing keys: generated once, published in the JWKS, rotated without logging anyone out."""

from __future__ import annotations

import threading
from pathlib import Path

from taskflow_auth import keys
from taskflow_auth.tokens import access_token
from taskflow_common.tokens import StaticJWKS, TokenVerifier


def test_workers_starting_together_share_one_generated_key(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "jwt-private.pem"
    loaded: list[str] = []

    def load() -> None:
        loaded.append(keys.load(path, [], generate_missing=True).kid)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(loaded)) == 1
    assert path.stat().st_mode & 0o077 == 0
    assert list(path.parent.iterdir()) == [path]


def test_rotation_keeps_tokens_of_the_previous_key_valid(tmp_path: Path) -> None:
    old = keys.load(tmp_path / "old.pem", [], generate_missing=True)
    token = access_token(old, user_id="u1", role="user", ttl_seconds=900)
    new = keys.load(tmp_path / "new.pem", [tmp_path / "old.pem"], generate_missing=True)
    assert new.kid != old.kid
    assert [key["kid"] for key in new.jwks["keys"]] == [new.kid, old.kid]
    verifier = TokenVerifier(StaticJWKS(new.jwks))
    assert verifier.verify(token).user_id == "u1"
    assert verifier.verify(access_token(new, user_id="u2", role="admin", ttl_seconds=900)).role == "admin"


def test_kid_is_the_rfc7638_thumbprint(tmp_path: Path) -> None:
    loaded = keys.load(tmp_path / "k.pem", [], generate_missing=True)
    assert loaded.kid == keys.thumbprint(loaded.private_key.public_key())
    assert len(loaded.kid) == 43
