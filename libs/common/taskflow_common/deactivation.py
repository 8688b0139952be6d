"""Refusing still-valid access tokens of deactivated users, in every service (DESIGN §4).

Access tokens live 15 minutes, so deactivation cannot wait for them to expire. Each service
keeps its own ``deactivated_users`` collection, fed by ``user.deactivated`` / ``user.activated``
events through its ``<service>.user-status`` queue, and :class:`DeactivatedUsers` refuses their
principals. Each process re-reads the (small) set at most every ``refresh_seconds``, so a
deactivation takes effect within the event's delivery time plus that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pymongo.database import Database

from .events.envelope import Event
from .events.topology import Subscription
from .projections import apply_if_newer
from .tokens import Principal

COLLECTION = "deactivated_users"


def subscription(service: str) -> Subscription:
    """The queue through which ``service`` learns about (de)activations."""
    return Subscription(f"{service}.user-status", ("user.deactivated", "user.activated"))


class DeactivatedUsers:
    """An access policy refusing deactivated users, and the handlers that keep it current.

    Args:
        db: the service's database, resolved per call.
        refresh_seconds: how stale a process's copy of the set may be.
    """

    def __init__(self, db: Callable[[], Database], *, refresh_seconds: float = 1.0) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self._ids: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def allows(self, principal: Principal) -> bool:
        """False when ``principal``'s account is deactivated (as of at most ``refresh_seconds`` ago)."""
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            with self._lock:
                if time.monotonic() - self._loaded_at > self.refresh_seconds:
                    found = self.db()[COLLECTION].find({"deactivated": True}, {"_id": 1})
                    self._ids = frozenset(document["_id"] for document in found)
                    self._loaded_at = time.monotonic()
        return principal.user_id not in self._ids

    def _record(self, event: Event, deactivated: bool) -> None:
        # Events of one user may arrive out of order: the snapshot's version decides.
        apply_if_newer(self.db()[COLLECTION], event.subject, int(event.data["version"]), {"deactivated": deactivated})

    def handle_user_deactivated(self, event: Event) -> None:
        self._record(event, deactivated=True)

    def handle_user_activated(self, event: Event) -> None:
        self._record(event, deactivated=False)

    @property
    def handlers(self) -> dict[str, Callable[[Event], None]]:
        """Event type → handler, for the ``<service>.user-status`` consumer."""
        return {"user.deactivated": self.handle_user_deactivated, "user.activated": self.handle_user_activated}
