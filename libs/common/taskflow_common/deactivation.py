"""Refusing still-valid access tokens after a change of their account, in every service (DESIGN §4).

Access tokens live 15 minutes, so a deactivation, a role change, a password change or a
logout-all cannot wait for them to expire. Auth raises the account's *access generation* with
each of those changes and puts it in the tokens it issues (``gen``) and in the change's
``user.*`` event. Each service keeps its own ``deactivated_users`` collection (one document per
user: ``deactivated``, ``access_generation``, ``version``; named for its first use, kept so
existing records stay in force), fed by those events through its ``<service>.user-status``
queue, and :class:`DeactivatedUsers` refuses a deactivated user's tokens (403) and tokens of an
earlier generation (401). Each process keeps a user's record for at most ``refresh_seconds``, so
a change takes effect within the event's delivery time plus that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from pymongo.database import Database

from .events.envelope import Event
from .events.topology import Subscription
from .problems import Forbidden
from .projections import apply_if_newer
from .tokens import Principal, TokenRevoked

COLLECTION = "deactivated_users"
ACCOUNT_EVENTS = ("user.deactivated", "user.activated", "user.role_changed", "user.password_changed",
                  "user.sessions_revoked")
"""The events whose snapshot carries a new access generation or activation."""
CACHED_USERS = 100_000
"""How many users' records a process keeps (about 20 MB at most)."""


def admit_account(principal: Principal, *, active: bool, access_generation: int) -> None:
    """Return when ``principal`` may act on an account that is ``active`` at ``access_generation``.

    Raises:
        Forbidden: the account is deactivated.
        TokenRevoked: the token is of an earlier access generation than the account's.
    """
    if not active:
        raise Forbidden("This account is deactivated.")
    if principal.generation < access_generation:
        raise TokenRevoked()


def subscription(service: str) -> Subscription:
    """The queue through which ``service`` learns about changes that end access tokens."""
    return Subscription(f"{service}.user-status", ACCOUNT_EVENTS)


class DeactivatedUsers:
    """An access policy refusing tokens that a change of their account ended, and the handlers
    that keep it current.

    Args:
        db: the service's database, resolved per call.
        refresh_seconds: how stale a process's copy of one user's record may be.
    """

    def __init__(self, db: Callable[[], Database], *, refresh_seconds: float = 1.0) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self._records: TTLCache[str, dict[str, Any]] = TTLCache(CACHED_USERS, refresh_seconds)
        self._lock = threading.Lock()

    def _record(self, user_id: str) -> dict[str, Any]:
        with self._lock:
            record = self._records.get(user_id)
        if record is None:
            record = self.db()[COLLECTION].find_one({"_id": user_id}, {"deactivated": 1, "access_generation": 1}) or {}
            with self._lock:
                self._records[user_id] = record
        return record

    def admit(self, principal: Principal) -> None:
        """Return when ``principal`` may act, as of at most ``refresh_seconds`` ago.

        Raises:
            Forbidden: the account is deactivated.
            TokenRevoked: the token is of an earlier access generation than the account's.
        """
        record = self._record(principal.user_id)
        admit_account(principal, active=not record.get("deactivated"),
                      access_generation=record.get("access_generation", 0))

    def handle(self, event: Event) -> None:
        """Keep the newest snapshot's activation and access generation (events of one user may
        arrive out of order: the snapshot's version decides)."""
        data = event.data
        apply_if_newer(self.db()[COLLECTION], event.subject, int(data["version"]),
                       {"deactivated": not data["active"], "access_generation": int(data.get("access_generation", 0))})

    @property
    def handlers(self) -> dict[str, Callable[[Event], None]]:
        """Event type → handler, for the ``<service>.user-status`` consumer."""
        return dict.fromkeys(ACCOUNT_EVENTS, self.handle)
