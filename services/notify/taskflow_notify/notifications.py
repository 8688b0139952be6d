"""The inbox: creating notifications exactly once, and what a user does with theirs (DESIGN §4 notify).

A notification's id is a UUID derived from its key (what it is about: ``welcome:<user>``,
``reminder:<task>:<due date>``, ``role_changed:<event id>``…). Creating it is two inserts with
that id, the inbox item, its live-feed entry, then its email delivery, each ignoring a duplicate key. So a redelivered
event, a crash between the two inserts followed by a retry, or two scheduler replicas racing all
end with one item and one delivery: the unique ``_id`` is the atomic claim, on FerretDB as on
MongoDB.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .errors import NotificationNotFound
from .messages import CHANNELS, NewNotification
from .schemas import Notification
from .store import DeliveryStore, FeedStore, NotificationStore, now

NAMESPACE = uuid.UUID("5b0f3c8e-6a7e-4d7e-9a51-7a3c2b1e9d40")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def notification_id(key: str) -> str:
    """The public id of the notification about ``key`` (a UUID version 5, RFC 9562 §5.5)."""
    return str(uuid.uuid5(NAMESPACE, key))


class Notifications:
    """Notifications and their email deliveries."""

    def __init__(self, store: NotificationStore, deliveries: DeliveryStore, feed: FeedStore | None = None) -> None:
        self.store = store
        self.deliveries = deliveries
        self.feed = feed

    def create(self, new: NewNotification, *, link: dict[str, str] | None = None) -> bool:
        """Create ``new`` in the inbox and queue its email, idempotently per ``new.key``; ``link``
        (a verification link's page, nonce, email and expiry: no secret) is kept on the delivery,
        for the email only.

        Returns:
            True if this call created the inbox item, False if it existed already.
        """
        identifier = notification_id(new.key)
        document = {
            "_id": identifier,
            "key": new.key,
            "user_id": new.user_id,
            "kind": new.kind,
            "title": new.title,
            "body": new.body,
            "subject_id": new.subject_id,
            "actor_id": new.actor_id,
            "channels": list(CHANNELS),
            "created_at": new.created_at,
            "read_at": None,
            "due_date": new.due_date,
        }
        created = self.store.insert(document)
        # Also when the item existed: an earlier attempt may have stopped before these inserts.
        if self.feed is not None:
            item = Notification.from_document(document).model_dump(mode="json")
            self.feed.append(f"notification:{identifier}", new.user_id, "notification", item)
        moment = now()
        self.deliveries.insert(
            {
                "_id": identifier,
                "user_id": new.user_id,
                "channel": "email",
                "status": "pending",
                "attempts": 0,
                "last_error": None,
                "created_at": moment,
                "next_attempt_at": moment,
                "last_attempt_at": None,
                "sent_at": None,
                **({"link": link} if link else {}),
            }
        )
        return created

    # -- the inbox API -----------------------------------------------------------------------

    def page(self, user_id: str, *, unread_only: bool, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The user's notifications, newest first, and how many there are."""
        return self.store.page(user_id, unread_only=unread_only, skip=skip, limit=limit)

    def _own(self, user_id: str, identifier: str) -> dict[str, Any]:
        found = self.store.get(identifier) if _UUID.match(identifier) else None
        if found is None or found["user_id"] != user_id:
            raise NotificationNotFound()
        return found

    def mark_read(self, user_id: str, identifier: str) -> None:
        """Mark one of the user's notifications read (again: no change). Raises NotificationNotFound."""
        notification = self._own(user_id, identifier)
        if notification["read_at"] is None:
            self.store.mark_read(identifier, now())

    def mark_all_read(self, user_id: str) -> None:
        """Mark every unread notification of the user read."""
        self.store.mark_all_read(user_id, now())
