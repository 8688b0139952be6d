"""Email verification: single-use links that prove a user holds their mailbox (DESIGN §4 auth,
"Email verification").

A link is ``<PUBLIC_URL>/verify-email#token=<token>``: 256 random bits in the URL's fragment,
which browsers never send to a server, so no gateway or access log records it; the page it opens
posts the token to ``POST /api/v1/auth/verify-email``. Auth stores only the token's SHA-256, with
the user and the link's expiry (``EMAIL_VERIFICATION_TTL``). Verifying spends the link; asking for
a new one closes the older ones. Notify sends the link (``user.email_verification_requested``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .store import EmailVerifications, now

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
"""A link's token as issued (32 random bytes, URL-safe base64 without padding)."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class VerificationLink:
    """A link just issued: its URL (a secret until spent) and when it stops working."""

    url: str
    expires_at: datetime


class VerificationLinks:
    """Issues, finds and spends verification links.

    Args:
        store: the open links, by token hash.
        base: ``PUBLIC_URL`` without a trailing slash.
        ttl_seconds: how long a link works.
    """

    def __init__(self, store: EmailVerifications, *, base: str, ttl_seconds: int) -> None:
        self.store = store
        self.base = base
        self.ttl = timedelta(seconds=ttl_seconds)

    def issue(self, user: dict[str, Any]) -> VerificationLink:
        """A new link for ``user`` (a stored user: ``_id``, ``email``); older ones are closed."""
        token = secrets.token_urlsafe(32)
        expires_at = now() + self.ttl
        self.store.close_user(str(user["_id"]))
        self.store.add(_token_hash(token), str(user["_id"]), user["email"], expires_at)
        return VerificationLink(f"{self.base}/verify-email#token={token}", expires_at)

    def find(self, token: str) -> dict[str, Any] | None:
        """The open link of ``token`` (``user_id``, ``email``), or None: malformed, unknown,
        spent, closed or expired."""
        return self.store.find(_token_hash(token)) if TOKEN.fullmatch(token) else None

    def spend(self, token: str) -> None:
        self.store.spend(_token_hash(token))
