"""Tokens of email-verification links, derived from a key that auth and notify share (DESIGN §4
auth, "Email verification").

Auth issues a link as a random ``nonce`` and an expiry; notify, which mails it, derives the same
token from them. So the token itself is never stored or sent anywhere but in the email: the event
between the two services and the documents of both carry only the nonce, useless without the
key, and auth keeps only the token's SHA-256 to find the link it names.

``token = base64url(HMAC-SHA256(key, "verify-email\\n<user id>\\n<email>\\n<nonce>\\n<expires_at>"))``
(43 characters, RFC 2104 HMAC, RFC 4648 §5 alphabet without padding).

The key is ``EMAIL_LINK_KEY_FILE``: 32 random bytes, hex. Outside production a missing file is
generated, once, by whichever service starts first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32


def default_key_file() -> Path:
    """``$TASKFLOW_VAR/email-link.key``: where both services find the key outside production."""
    return Path(os.environ.get("TASKFLOW_VAR", "var")) / "email-link.key"


def load_key(path: Path, *, generate_missing: bool) -> bytes:
    """The link key stored at ``path`` (hex).

    Raises:
        FileNotFoundError: the file is missing and ``generate_missing`` is false (production).
        ValueError: the file does not hold at least 32 bytes in hex.
    """
    if generate_missing and not path.exists():
        # Written aside, then linked into place: another service never reads a half-written key.
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as written:
            written.write(secrets.token_hex(KEY_BYTES))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another service's key is in place
        finally:
            os.unlink(draft)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise ValueError(f"{path}: the email link key must be at least {KEY_BYTES} bytes in hex")
    return key


def check_key_file(path: Path, *, production: bool) -> None:
    """Settings' check of ``EMAIL_LINK_KEY_FILE``: in production the file must exist; wherever it
    exists it must hold a key (without repeating the file's content).

    Raises:
        ValueError: naming the variable and what is wrong.
    """
    if not path.exists():
        if production:
            raise ValueError("EMAIL_LINK_KEY_FILE must name an existing key file in production")
        return
    try:
        load_key(path, generate_missing=False)
    except (OSError, ValueError):
        raise ValueError(f"EMAIL_LINK_KEY_FILE must hold at least {KEY_BYTES} random bytes in hex") from None


def new_nonce() -> str:
    """A fresh nonce for one link (128 random bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def link_token(key: bytes, *, user_id: str, email: str, nonce: str, expires_at: str) -> str:
    """The token of the link ``nonce`` issued to ``user_id`` at ``email``, valid until
    ``expires_at`` (RFC 3339 text, as the event carries it)."""
    message = "\n".join(("verify-email", user_id, email, nonce, expires_at)).encode("utf-8")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """How auth stores and finds a link: the token's SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
