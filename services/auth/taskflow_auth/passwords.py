"""Password hashing with bcrypt, for passwords of any length.

bcrypt reads only the first 72 bytes of its input (and bcrypt 5 raises on longer input), so a
128-character password of 4-byte characters would be cut to 18 characters, and two passwords
equal in their first 72 bytes would both verify. Every password is therefore first reduced to a
fixed-size digest, SHA-256 in base64 (44 bytes, no NUL), and that is what bcrypt hashes: the whole
password counts, whatever its length. Passwords are compared in Unicode NFC form, so the same
password typed on two keyboards (composed or decomposed accents) verifies.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata

import bcrypt

MIN_LENGTH = 8
MAX_LENGTH = 128


def normalized(password: str) -> str:
    """The form a password is measured, hashed and compared in (NFC)."""
    return unicodedata.normalize("NFC", password)


def _digest(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(normalized(password).encode("utf-8")).digest())


class PasswordHasher:
    """Hashes and verifies passwords at a fixed bcrypt cost.

    Args:
        rounds: the bcrypt cost factor (``BCRYPT_ROUNDS``).
    """

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        # Verifying against this when the email is unknown makes that answer as slow as a wrong password.
        self._decoy = bcrypt.hashpw(b"decoy", bcrypt.gensalt(rounds))

    def hash(self, password: str) -> str:
        """A new salted hash of ``password`` (bcrypt modular crypt format)."""
        return bcrypt.hashpw(_digest(password), bcrypt.gensalt(self.rounds)).decode("ascii")

    def verify(self, password: str, hashed: str | None) -> bool:
        """True when ``password`` matches ``hashed``; with no hash, spends the same time and says False."""
        if hashed is None:
            bcrypt.checkpw(_digest(password), self._decoy)
            return False
        return bcrypt.checkpw(_digest(password), hashed.encode("ascii"))
