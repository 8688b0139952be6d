"""Issuing tokens: RS256 access tokens (DESIGN §4) and opaque refresh tokens.

Access tokens are JWTs typed ``at+jwt`` (RFC 9068) with ``iss``, ``aud``, ``sub``, ``role``,
``iat``, ``exp``, ``jti`` and ``gen`` (the account's access generation), verified everywhere by :class:`taskflow_common.tokens.TokenVerifier`.
Refresh tokens are 256 random bits; only their SHA-256 is stored, so a database leak yields no
usable token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

import jwt
from taskflow_common.tokens import ALGORITHM, AUDIENCE, ISSUER, TOKEN_TYPE

from .keys import SigningKeys


def access_token(keys: SigningKeys, *, user_id: str, role: str, ttl_seconds: int, generation: int = 0) -> str:
    """A signed access token for ``user_id`` with ``role`` and access ``generation``, valid
    ``ttl_seconds`` from now."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "role": role,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "gen": generation,
    }
    return jwt.encode(claims, keys.private_key, algorithm=ALGORITHM, headers={"kid": keys.kid, "typ": TOKEN_TYPE})


def new_refresh_token() -> str:
    """A fresh opaque refresh token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> str:
    """How a refresh token is stored and looked up (hex SHA-256; the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
