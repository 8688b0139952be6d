"""Every MongoDB query of the notify service, with the indexes they need declared in one place.

Collections:

- ``notifications``: the inbox. ``_id`` is a UUID derived from what the notification is about
  (see :func:`.notifications.notification_id`), so creating one twice is a duplicate key, not a
  second notification. After the insert only ``read_at`` ever changes, and only from null to a
  time, so marking read needs no lock: two racing writers both leave it read.
- ``deliveries``: one per notification, its email: status (``pending``, ``sent``, ``failed``,
  ``cancelled``), ``attempts``, ``last_error``, ``next_attempt_at``, ``sent_at``, and the
  ``notification.sent`` event in ``_outbox``. Changed only under its lock ``deliveries:<id>``.
- ``recipients``: each user's newest snapshot (email, name, role, active) from ``user.*`` events.
- ``reminders``: the schedule, one document per task (its newest snapshot from ``task.*`` events)
  with ``reminder_due``: the due date a reminder is still owed for, else null. Changed only under
  ``reminders:<task id>``.
- ``deactivated_users``, ``locks``, ``outbox``, ``processed_events``: the shared library's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from taskflow_common.events.envelope import Event
from taskflow_common.events.outbox import OUTBOX_FIELD, Outbox, document_key
from taskflow_common.locks import DocumentLocks
from taskflow_common.mongo import Indexes
from taskflow_common.projections import apply_if_newer

NOTIFICATIONS = "notifications"
DELIVERIES = "deliveries"
RECIPIENTS = "recipients"
REMINDERS = "reminders"

NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
INDEXES = (
    Indexes(NOTIFICATIONS, (
        IndexModel([("user_id", ASCENDING), *NEWEST_FIRST]),  # the inbox page and its count
        IndexModel([("user_id", ASCENDING), ("read_at", ASCENDING), *NEWEST_FIRST]),  # unread only; read-all
    )),
    Indexes(DELIVERIES, (IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)]),)),  # the mailer's scan
    Indexes(REMINDERS, (IndexModel([("reminder_due", ASCENDING)]),)),  # the scheduler's scan
)
WITHOUT_OUTBOX = {OUTBOX_FIELD: 0}


def now() -> datetime:
    """The current time in UTC, truncated to milliseconds as MongoDB stores it."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class NotificationStore:
    """The inbox."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    @property
    def _notifications(self):  # noqa: ANN202
        return self._db()[NOTIFICATIONS]

    def insert(self, notification: dict[str, Any]) -> bool:
        """Store a new notification; False when one with its ``_id`` already exists."""
        try:
            self._notifications.insert_one(notification)
            return True
        except DuplicateKeyError:
            return False

    def get(self, notification_id: str) -> dict[str, Any] | None:
        return self._notifications.find_one({"_id": notification_id})

    def page(self, user_id: str, *, unread_only: bool, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The user's notifications newest first, and how many match."""
        query: dict[str, Any] = {"user_id": user_id}
        if unread_only:
            query["read_at"] = None
        found = self._notifications.find(query).sort(NEWEST_FIRST).skip(skip).limit(limit)
        return list(found), self._notifications.count_documents(query)

    def mark_read(self, notification_id: str, at: datetime) -> None:
        # Filtered on _id alone: FerretDB's SQLite storage pushes only that down.
        self._notifications.update_one({"_id": notification_id}, {"$set": {"read_at": at}})

    def mark_all_read(self, user_id: str, at: datetime) -> None:
        self._notifications.update_many({"user_id": user_id, "read_at": None}, {"$set": {"read_at": at}})


class DeliveryStore:
    """Email deliveries, with the ``notification.sent`` event of each finished one (outbox).

    Args:
        db: the service's database, resolved per call.
        outbox: the service's outbox.
        claim_lease_seconds: how long a mailer's claim on a delivery outlives a mailer that died;
            longer than one SMTP exchange, so a live mailer never loses it mid-send.
    """

    def __init__(self, db: Callable[[], Database], outbox: Outbox, *, claim_lease_seconds: float = 120.0) -> None:
        self._db = db
        self.outbox = outbox
        # wait_seconds=0: a delivery another mailer holds is skipped at once, not waited for.
        self._claims = DocumentLocks(db, lease_seconds=claim_lease_seconds, wait_seconds=0)

    @property
    def _deliveries(self):  # noqa: ANN202
        return self._db()[DELIVERIES]

    def insert(self, delivery: dict[str, Any]) -> bool:
        """Store a new pending delivery; False when it already exists."""
        try:
            self._deliveries.insert_one(delivery)
            return True
        except DuplicateKeyError:
            return False

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        return self._deliveries.find_one({"_id": delivery_id}, WITHOUT_OUTBOX)

    def due(self, at: datetime, limit: int) -> list[str]:
        """Ids of pending deliveries whose next attempt is due by ``at``, most overdue first."""
        found = self._deliveries.find(
            {"status": "pending", "next_attempt_at": {"$lte": at}}, {"_id": 1}
        ).sort("next_attempt_at", ASCENDING).limit(limit)
        return [delivery["_id"] for delivery in found]

    def claim(self, delivery_id: str) -> AbstractContextManager[None]:
        """Hold the delivery for one attempt: a unique insert of its lock (the key the outbox uses
        for this document). Raises :class:`~taskflow_common.locks.LockTimeout` at once when
        another mailer holds it."""
        return self._claims.hold(document_key(DELIVERIES, delivery_id))

    def retry_later(self, delivery_id: str, *, attempts: int, error: str, at: datetime, retry_at: datetime) -> None:
        """Record a failed attempt; the next one is due at ``retry_at``. Under the claim."""
        self._deliveries.update_one(
            {"_id": delivery_id},
            {"$set": {"attempts": attempts, "last_error": error, "last_attempt_at": at, "next_attempt_at": retry_at}},
        )

    def finish(self, delivery_id: str, outcome: dict[str, Any], events: Sequence[Event]) -> None:
        """Record the final ``outcome`` (status, attempts, …) with ``events``. Under the claim."""
        if not events:
            self._deliveries.update_one({"_id": delivery_id}, {"$set": outcome})
            return
        with self.outbox.write(DELIVERIES, delivery_id, events) as pending:
            self._deliveries.update_one({"_id": delivery_id}, {"$set": outcome, **pending.update_operators})


class RecipientStore:
    """Who notifications go to: the newest ``user.*`` snapshot of each user."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db
        self._locks = DocumentLocks(db)

    def apply(self, user: dict[str, Any]) -> bool:
        """Keep ``user`` (an event's snapshot) unless a newer version is stored. True if kept."""
        fields = {name: user[name] for name in ("email", "name", "role", "active")}
        return apply_if_newer(self._db()[RECIPIENTS], self._locks, user["id"], int(user["version"]), fields)

    def get(self, user_id: str) -> dict[str, Any] | None:
        return self._db()[RECIPIENTS].find_one({"_id": user_id})


class ReminderStore:
    """The reminder schedule: each task's newest snapshot and the reminder it is owed."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db
        self._locks = DocumentLocks(db)

    @property
    def _reminders(self):  # noqa: ANN202
        return self._db()[REMINDERS]

    def lock(self, task_id: str) -> AbstractContextManager[None]:
        """Hold the task's schedule: read, then :meth:`save`, inside it."""
        return self._locks.hold(f"{REMINDERS}:{task_id}")

    def get(self, task_id: str) -> dict[str, Any] | None:
        return self._reminders.find_one({"_id": task_id})

    def save(self, task_id: str, fields: dict[str, Any]) -> None:
        """Set ``fields`` on the task's schedule, creating it. Under the task's lock."""
        self._reminders.update_one({"_id": task_id}, {"$set": fields}, upsert=True)

    def due(self, until: datetime, limit: int) -> list[str]:
        """Tasks owed a reminder for a due date up to ``until``, earliest first."""
        found = self._reminders.find({"reminder_due": {"$lte": until}}, {"_id": 1}).sort("reminder_due", ASCENDING).limit(limit)
        return [reminder["_id"] for reminder in found]
