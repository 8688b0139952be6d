"""Access tokens for tests of one service in isolation, signed like auth's with a test key."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from taskflow_common.tokens import StaticJWKS, TokenVerifier


class Issuer:
    """Signs tokens the way auth does, with a key of its own; ``jwks`` publishes the public half."""

    def __init__(self, kid: str = "test-key") -> None:
        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**public_jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": "taskflow-auth",
            "aud": "taskflow",
            "sub": uuid.uuid4().hex[:24],
            "role": "user",
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def token(self, *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        return jwt.encode(
            self.claims(**claims),
            self.private_key,
            algorithm="RS256",
            headers={"kid": self.kid, "typ": "at+jwt", **(headers or {})},
        )

    def headers(self, user_id: str, role: str = "user") -> dict[str, str]:
        """An ``Authorization`` header with a fresh access token for ``user_id``."""
        return {"Authorization": f"Bearer {self.token(sub=user_id, role=role)}"}

    def verifier(self) -> TokenVerifier:
        """A verifier that trusts exactly this issuer's key."""
        return TokenVerifier(StaticJWKS(self.jwks))
