"""Only access tokens auth issued for this audience get through (DESIGN §4; issue 4's attacks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient
from taskflow_common.tokens import InvalidToken, KeysUnavailable, RemoteJWKS, StaticJWKS, TokenVerifier

from tests.support.processes import free_port
from tests.support.tokens import Issuer


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_gives_its_principal(issuer: Issuer) -> None:
    principal = TokenVerifier(StaticJWKS(issuer.jwks)).verify(issuer.token(sub="abc", role="admin", jti="j1"))
    assert (principal.user_id, principal.role, principal.token_id, principal.is_admin) == ("abc", "admin", "j1", True)


def _hs256_signed_with_public_key(issuer: Issuer) -> str:
    """The classic algorithm-confusion forgery: the RSA public key used as an HMAC secret."""
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': issuer.kid})}.{_b64(issuer.claims())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def forged_tokens(issuer: Issuer) -> dict[str, str]:
    other = Issuer(kid=issuer.kid)
    now = int(time.time())
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'at+jwt', 'kid': issuer.kid})}.{_b64(issuer.claims())}.",
        "HS256 signed with the public key": _hs256_signed_with_public_key(issuer),
        "wrong audience": issuer.token(aud="someone-else"),
        "wrong issuer": issuer.token(iss="evil"),
        "expired": issuer.token(iat=now - 3600, exp=now - 600),
        "not yet valid": issuer.token(iat=now, nbf=now + 600),
        "issued in the future": issuer.token(iat=now + 600, exp=now + 1200),
        "without exp": issuer.token(exp=None),
        "without jti": issuer.token(jti=None),
        "unknown role": issuer.token(role="superuser"),
        "signed by another key with the same kid": other.token(),
        "unknown kid": issuer.token(headers={"kid": "nope"}),
        "not an access token type": issuer.token(headers={"typ": "JWT"}),
        "garbage": "not.a.token",
        "an opaque refresh token": "dGhpcyBpcyBhbiBvcGFxdWUgcmVmcmVzaCB0b2tlbg",
    }


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "HS256 signed with the public key",
        "wrong audience",
        "wrong issuer",
        "expired",
        "not yet valid",
        "issued in the future",
        "without exp",
        "without jti",
        "unknown role",
        "signed by another key with the same kid",
        "unknown kid",
        "not an access token type",
        "garbage",
        "an opaque refresh token",
    ],
)
def test_forged_or_unsuitable_tokens_are_rejected(issuer: Issuer, case: str) -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(StaticJWKS(issuer.jwks)).verify(forged_tokens(issuer)[case])


def test_small_clock_skew_is_tolerated(issuer: Issuer) -> None:
    now = int(time.time())
    token = issuer.token(iat=now - 900, exp=now - 5)
    assert TokenVerifier(StaticJWKS(issuer.jwks), leeway_seconds=30).verify(token)


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer not-a-jwt"]
)
def test_protected_route_without_a_valid_token_is_401_problem(client: FlaskClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.get("/api/v1/sample/items", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_admin_route_is_403_for_a_user_and_open_to_an_admin(client: FlaskClient, issuer: Issuer) -> None:
    user = client.get("/api/v1/sample/admin-only", headers={"Authorization": f"Bearer {issuer.token(role='user')}"})
    admin = client.get("/api/v1/sample/admin-only", headers={"Authorization": f"Bearer {issuer.token(role='admin')}"})
    assert user.status_code == 403
    assert user.mimetype == "application/problem+json"
    assert admin.status_code == 204


class _JWKSServer:
    """A JWKS endpoint whose key set the test can change, counting fetches."""

    def __init__(self, jwks: dict) -> None:
        self.jwks = jwks
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server(issuer: Issuer) -> Iterator[_JWKSServer]:
    server = _JWKSServer(issuer.jwks)
    yield server
    server.close()


def test_remote_jwks_is_cached(issuer: Issuer, jwks_server: _JWKSServer) -> None:
    verifier = TokenVerifier(RemoteJWKS(jwks_server.url))
    for _ in range(5):
        verifier.verify(issuer.token())
    assert jwks_server.fetches == 1


def test_remote_jwks_is_refetched_for_a_rotated_in_key(issuer: Issuer, jwks_server: _JWKSServer) -> None:
    verifier = TokenVerifier(RemoteJWKS(jwks_server.url, cooldown_seconds=0))
    verifier.verify(issuer.token())
    rotated = Issuer(kid="next-key")
    jwks_server.jwks = {"keys": issuer.jwks["keys"] + rotated.jwks["keys"]}
    assert verifier.verify(rotated.token()).role == "user"
    assert verifier.verify(issuer.token()).role == "user"
    assert jwks_server.fetches == 2


def test_unknown_kids_cannot_make_every_request_refetch(issuer: Issuer, jwks_server: _JWKSServer) -> None:
    verifier = TokenVerifier(RemoteJWKS(jwks_server.url, cooldown_seconds=60))
    verifier.verify(issuer.token())
    for attempt in range(5):
        with pytest.raises(InvalidToken):
            verifier.verify(issuer.token(headers={"kid": f"random-{attempt}"}))
    assert jwks_server.fetches == 1


def test_unreachable_jwks_is_reported_as_unavailable(issuer: Issuer) -> None:
    verifier = TokenVerifier(RemoteJWKS(f"http://127.0.0.1:{free_port()}/jwks.json", timeout=1))
    with pytest.raises(KeysUnavailable):
        verifier.verify(issuer.token())

