"""Email verification: single-use links that prove a user holds their mailbox (DESIGN §4 auth,
"Email verification").

A link is ``<PUBLIC_URL>/verify-email#token=<token>``; the token sits in the URL's fragment,
which browsers never send to a server, so no gateway or access log records it, and the page it
opens (:mod:`.verify_page`) posts it to ``POST /api/v1/auth/verify-email``. The token is derived
from the link's nonce with the key auth and notify share (:mod:`taskflow_common.email_links`):
the event that asks notify to mail it carries only the nonce, and auth stores only the token's
SHA-256. Each user has one open link at a time, working until ``EMAIL_VERIFICATION_TTL`` ends;
verifying spends it, issuing a new one replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from taskflow_common.email_links import link_token, new_nonce, token_hash

from .store import VerificationLinkStore, now

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
"""A link's token as derived (32 bytes of HMAC, URL-safe base64 without padding)."""


@dataclass(frozen=True)
class VerificationLink:
    """A link just issued, as ``user.email_verification_requested`` carries it to notify: the page
    it opens, its nonce and its expiry (RFC 3339); the token follows from them and the key."""

    page: str
    nonce: str
    expires_at: str


class VerificationLinks:
    """Issues and spends verification links.

    Args:
        store: each user's open link, by token hash.
        key: the link key shared with notify.
        base: ``PUBLIC_URL`` without a trailing slash.
        ttl_seconds: how long a link works.
    """

    def __init__(self, store: VerificationLinkStore, key: bytes, *, base: str, ttl_seconds: int) -> None:
        self.store = store
        self.key = key
        self.page = f"{base}/verify-email"
        self.ttl = timedelta(seconds=ttl_seconds)

    def issue(self, user: dict[str, Any]) -> VerificationLink:
        """A new link for ``user`` (a stored user: ``_id``, ``email``), replacing its open one."""
        expires_at = now() + self.ttl
        expires_text = expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        nonce = new_nonce()
        token = link_token(self.key, user_id=str(user["_id"]), email=user["email"], nonce=nonce, expires_at=expires_text)
        self.store.open(str(user["_id"]), token_hash(token), user["email"], expires_at)
        return VerificationLink(self.page, nonce, expires_text)

    def spend(self, token: str) -> dict[str, Any] | None:
        """Take the open link of ``token`` (``_id``: its user, ``email``), or None: malformed,
        unknown, already spent, replaced or expired. Of parallel spends of one link, one gets it."""
        return self.store.spend(token_hash(token)) if TOKEN.fullmatch(token) else None
