"""Access-token verification, the same in every service (DESIGN §4).

Access tokens are JWTs signed by auth with RS256 and a ``kid`` header, typed ``at+jwt``
(RFC 9068 §2.1), with claims ``iss=taskflow-auth``, ``aud=taskflow``, ``sub``, ``role``, ``iat``,
``exp``, ``jti`` and ``gen`` (the account's access generation when the token was issued: a role
change, deactivation, password change or logout-all raises it, and an :class:`AccessPolicy`
refuses tokens of an earlier one). :class:`TokenVerifier` accepts nothing else: no other algorithm (so no
``alg: none`` and no HS256 signed with the public key), no other issuer or audience, no expired
or not-yet-valid token, no token without a known ``kid``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import jwt
from flask import Flask, current_app, request

from .problems import Forbidden, ServiceUnavailable, Unauthorized

ISSUER = "taskflow-auth"
AUDIENCE = "taskflow"
ALGORITHM = "RS256"
TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "role", "iat", "exp", "jti")
Role = Literal["user", "admin"]
ROLES: tuple[Role, ...] = ("user", "admin")
EXTENSION = "taskflow.tokens"


class InvalidToken(Exception):
    """The token is not one auth issued for this audience, or is no longer valid."""


class KeysUnavailable(Exception):
    """The JWKS could not be fetched, so no token can be verified right now."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller an access token names: ``user_id`` (``sub``), ``role``, ``token_id`` (``jti``),
    ``generation`` (``gen``; 0 for a token issued before the claim existed) and ``expires_at``
    (``exp``, seconds since the epoch; what a long response such as a stream must not outlive)."""

    user_id: str
    role: Role
    token_id: str
    generation: int = 0
    expires_at: float = math.inf

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class KeySource(Protocol):
    """Where a verifier finds public keys by ``kid``."""

    def key_for(self, kid: str) -> Any:
        """Return the public key for ``kid``; raise :class:`InvalidToken` for an unknown kid."""
        ...


class RemoteJWKS:
    """Keys from auth's JWKS endpoint, cached for ``lifespan_seconds``.

    An unknown ``kid`` triggers one refetch (so a rotated-in key is found), at most once per
    ``cooldown_seconds`` (so random kids cannot make every request call auth).
    """

    def __init__(self, url: str, *, lifespan_seconds: float = 300, cooldown_seconds: float = 5, timeout: float = 2):
        self._client = jwt.PyJWKClient(
            url, cache_jwk_set=True, lifespan=lifespan_seconds, timeout=timeout, cooldown_duration=cooldown_seconds
        )

    def key_for(self, kid: str) -> Any:
        try:
            return self._client.get_signing_key(kid).key
        except jwt.PyJWKClientConnectionError as error:
            raise KeysUnavailable(str(error)) from error
        except jwt.PyJWKClientError as error:
            raise InvalidToken("unknown key id") from error


class StaticJWKS:
    """Keys from a JWK Set held in memory (auth verifies its own tokens without HTTP)."""

    def __init__(self, jwks: Mapping[str, Any]):
        self._keys = {key.key_id: key.key for key in jwt.PyJWKSet.from_dict(dict(jwks)).keys}

    def key_for(self, kid: str) -> Any:
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken("unknown key id") from None


class TokenVerifier:
    """Verifies access tokens; see the module docstring for exactly what is accepted.

    Args:
        keys: the public keys, usually :class:`RemoteJWKS` on ``JWKS_URL``.
        leeway_seconds: clock skew tolerated on ``exp``, ``iat`` and ``nbf``.
    """

    def __init__(self, keys: KeySource, *, leeway_seconds: float = 30) -> None:
        self.keys = keys
        self.leeway = leeway_seconds

    def verify(self, token: str) -> Principal:
        """Return the token's principal.

        Raises:
            InvalidToken: malformed, wrong type/algorithm/issuer/audience, bad signature,
                expired, not yet valid, or an unknown role.
            KeysUnavailable: the signing key is unknown and the JWKS cannot be fetched.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken("malformed token") from error
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE or not isinstance(header.get("kid"), str):
            raise InvalidToken("not an RS256 access token with a key id")
        key = self.keys.key_for(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        generation = claims.get("gen", 0)
        if (claims["role"] not in ROLES or not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str)
                or type(generation) is not int or generation < 0):
            raise InvalidToken("unexpected claims")
        return Principal(user_id=claims["sub"], role=claims["role"], token_id=claims["jti"], generation=generation,
                         expires_at=claims["exp"] + self.leeway)


class AccessPolicy(Protocol):
    """Decides whether a verified principal may still act."""

    def admit(self, principal: Principal) -> None:
        """Return when ``principal`` may act.

        Raises:
            TokenRevoked: the token is of an earlier access generation than the account's.
            Forbidden: the account is deactivated.
        """
        ...


class TokenRevoked(Unauthorized):
    """An access token issued before a change of its account (role, activation, password,
    logout-all): 401 ``invalid_token``; the client refreshes (or signs in again)."""

    def __init__(self) -> None:
        super().__init__("The access token was revoked by a change of the account.", error="invalid_token")


@dataclass(frozen=True)
class _Authentication:
    verifier: TokenVerifier
    policy: AccessPolicy | None


def install(app: Flask, verifier: TokenVerifier, policy: AccessPolicy | None = None) -> None:
    """Make ``verifier`` (and the optional access ``policy``) the app's way to authenticate."""
    app.extensions[EXTENSION] = _Authentication(verifier, policy)


def authenticate(require_admin: bool = False) -> Principal:
    """The principal of the current request's bearer token.

    Raises:
        Unauthorized: no ``Authorization: Bearer`` header, an invalid token (RFC 6750 §3.1), or a
            revoked one (:class:`TokenRevoked`, from the app's :class:`AccessPolicy`).
        Forbidden: a deactivated account, or ``require_admin`` and the role is not ``admin``.
        ServiceUnavailable: the JWKS cannot be fetched to verify the token.
    """
    authentication: _Authentication = current_app.extensions[EXTENSION]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    try:
        principal = authentication.verifier.verify(token.strip())
    except InvalidToken:
        raise Unauthorized("The access token is invalid or expired.", error="invalid_token") from None
    except KeysUnavailable:
        raise ServiceUnavailable("Access tokens cannot be verified right now.", headers={"Retry-After": "1"}) from None
    if authentication.policy is not None:
        authentication.policy.admit(principal)
    if require_admin and not principal.is_admin:
        raise Forbidden("This operation requires the admin role.")
    return principal
