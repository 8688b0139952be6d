"""The RSA keys that sign access tokens, and the JWKS that publishes their public halves.

The current key signs; previous keys (``JWT_PREVIOUS_KEY_FILES``) stay in the JWKS so tokens
they signed verify until they expire: rotating logs nobody out. A key's ``kid`` is its RFC 7638
JWK thumbprint, so it is stable and needs no registry. Outside production a missing key file is
generated once, atomically, so several gunicorn workers starting together agree on one key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048


@dataclass(frozen=True)
class SigningKeys:
    """The key that signs (``kid``, private key) and every public key that verifies, as a JWKS."""

    kid: str
    private_key: rsa.RSAPrivateKey
    jwks: dict[str, list[dict[str, Any]]]


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 §3: base64url(SHA-256 of the canonical JSON of the required members e, kty, n)."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, Any]:
    """The RFC 7517 JWK of a verification key, with ``kid``, ``use`` and ``alg``."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
    return {**jwk, "kid": thumbprint(public_key), "use": "sig", "alg": "RS256"}


def _read_public_key(path: Path) -> rsa.RSAPublicKey:
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        key = serialization.load_pem_private_key(data, password=None)
        public = key.public_key()
    else:
        public = serialization.load_pem_public_key(data)
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError(f"{path} is not an RSA key")
    return public


def _generate(path: Path) -> None:
    """Write a new private key to ``path`` unless one appears there first (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".jwt-key-")
    try:
        os.write(descriptor, pem)
        os.close(descriptor)
        os.link(temporary, path)  # atomic; fails if another worker won the race
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def load(private_key_file: Path, previous_key_files: list[Path], *, generate_missing: bool) -> SigningKeys:
    """The signing key from ``private_key_file`` (generated first if missing and allowed).

    Raises:
        FileNotFoundError: the key file is missing and ``generate_missing`` is False.
        ValueError: a file is not an RSA PEM key.
    """
    if generate_missing and not private_key_file.exists():
        _generate(private_key_file)
    private_key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError(f"{private_key_file} is not an RSA private key")
    public_keys = [private_key.public_key(), *(_read_public_key(path) for path in previous_key_files)]
    return SigningKeys(
        kid=thumbprint(private_key.public_key()),
        private_key=private_key,
        jwks={"keys": [public_jwk(key) for key in public_keys]},
    )
