"""Every MongoDB query of the notify service, with the indexes they need declared in one place.

Collections:

- ``notifications``: the inbox. ``_id`` is a UUID derived from what the notification is about
  (see :func:`.notifications.notification_id`), so creating one twice is a duplicate key, not a
  second notification. After the insert only ``read_at`` ever changes, and only from null to a
  time, so marking read needs no lock: two racing writers both leave it read.
- ``deliveries``: one per notification, its email: status (``pending``, ``sent``, ``failed``,
  ``cancelled``, ``skipped``), ``attempts``, ``last_error``, ``next_attempt_at``, ``sent_at``,
  ``link`` (a verification email's page, nonce, email and expiry; the token needs the key), and the
  ``notification.sent`` event in ``_outbox``. A mailer claims one attempt by a conditional
  update setting ``claimed_by`` and ``claimed_until``; it records the outcome only while its
  claim is still the one stored. Finished deliveries expire after :data:`DELIVERY_RETENTION`.
- ``recipients``: each user's newest snapshot (email, name, role, active, email_verified) from
  ``user.*`` events.
- ``mail_quotas``: emails sent per recipient address and UTC day, ``{_id: "<address>:<day>",
  count}``; each taken by one conditional ``$inc`` below the limit.
- ``reminders``: the schedule, one document per task (its newest snapshot from ``task.*`` events)
  with ``reminder_due``: the due date a reminder is still owed for, else null. Each change is
  conditional on what it was computed from (``version``, ``reminder_due``, ``reminded_due``).
- ``feed``: the live feed of each user (``GET /notifications/stream``): one entry per new
  notification and per ``task.*`` event of the user's tasks, ``{_id: <what it is about>, user_id,
  kind, seq, at, data}``, ``seq`` the milliseconds since the epoch at which it was written. An
  entry's ``_id`` is derived from its cause, so a redelivered event adds nothing. Entries expire
  after :data:`FEED_RETENTION`.
- ``streams``: the live streams open now, one slot per stream, ``{_id: "<user id>:<n>", user_id,
  holder, expires_at}`` with ``n`` below the per-user limit: taking a slot is an insert, or a
  conditional update of one whose lease ran out (its stream's process died), so no two streams hold
  one slot and a user never holds more than the limit (see :class:`StreamSlots`).
- ``deactivated_users``, ``outbox``, ``processed_events``: the shared library's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from taskflow_common.events.envelope import Event
from taskflow_common.events.outbox import WITHOUT_EVENTS, Outbox
from taskflow_common.expiry import Expiry
from taskflow_common.mongo import Indexes
from taskflow_common.projections import apply_if_newer

NOTIFICATIONS = "notifications"
DELIVERIES = "deliveries"
RECIPIENTS = "recipients"
REMINDERS = "reminders"
MAIL_QUOTAS = "mail_quotas"
FEED = "feed"
STREAMS = "streams"

NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
INDEXES = (
    Indexes(NOTIFICATIONS, (
        IndexModel([("user_id", ASCENDING), *NEWEST_FIRST]),  # the inbox page and its count
        IndexModel([("user_id", ASCENDING), ("read_at", ASCENDING), *NEWEST_FIRST]),  # unread only; read-all
    )),
    Indexes(DELIVERIES, (IndexModel([("status", ASCENDING), ("next_attempt_at", ASCENDING)]),)),  # the mailer's scan
    Indexes(REMINDERS, (
        IndexModel([("reminder_due", ASCENDING)]),  # the scheduler's scan
        IndexModel([("reminder_outcome", ASCENDING)]),  # reminders a dead scheduler left sending
    )),
    Indexes(FEED, (IndexModel([("user_id", ASCENDING), ("seq", ASCENDING)]),)),  # a stream's next entries
)
DELIVERY_RETENTION = timedelta(days=30)
"""How long a finished delivery is kept (its outcome, for operators), counted from ``finished_at``;
longer than the consumers' de-duplication window, so a redelivered event finds its delivery."""
FEED_RETENTION = timedelta(days=1)
"""How long a live-feed entry can still be resent to a stream that reconnects (``Last-Event-ID``)."""
EXPIRIES = (
    Expiry(DELIVERIES, "finished_at", DELIVERY_RETENTION),  # a pending delivery has no finished_at
    Expiry(FEED, "at", FEED_RETENTION),
    Expiry(MAIL_QUOTAS, "expires_at"),  # a day's count once the day is over
    Expiry(STREAMS, "expires_at"),  # the slot of a stream whose process died without releasing it
)


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


class FeedStore:
    """Each user's live feed, in the order its entries were written (``seq``, then ``_id``)."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    @property
    def _feed(self):  # noqa: ANN202
        return self._db()[FEED]

    def append(self, entry_id: str, user_id: str, kind: str, data: dict[str, Any]) -> None:
        """Add ``data`` (JSON-ready) to the user's feed as ``kind``; nothing if ``entry_id`` is there already."""
        moment = now()
        try:
            self._feed.insert_one(
                {"_id": entry_id, "user_id": user_id, "kind": kind, "seq": int(moment.timestamp() * 1000), "at": moment,
                 "data": data}
            )
        except DuplicateKeyError:
            pass

    def since(self, user_id: str, seq: int, *, limit: int = 100) -> list[dict[str, Any]]:
        """The user's entries written at ``seq`` (ms since the epoch) or later, oldest first."""
        found = self._feed.find({"user_id": user_id, "seq": {"$gte": seq}}).sort([("seq", ASCENDING), ("_id", ASCENDING)])
        return list(found.limit(limit))


@dataclass(frozen=True)
class Slot:
    """A stream's slot: its ``_id`` and the random token of the stream holding it."""

    id: str
    holder: str


class StreamSlots:
    """The live streams each user has open, at most ``limit`` at a time across every process.

    A stream holds a slot for ``lease_seconds`` and renews it while it runs; a slot whose lease ran
    out (its process was killed) is taken over by the next stream, or swept (:data:`EXPIRIES`).

    Args:
        db: the service's database, resolved per call.
        limit: the most streams one user may have open.
        lease_seconds: how long a slot outlives a stream that stopped renewing it.
    """

    def __init__(self, db: Callable[[], Database], *, limit: int, lease_seconds: float) -> None:
        self._db = db
        self.limit = limit
        self.lease = timedelta(seconds=lease_seconds)

    @property
    def _streams(self):  # noqa: ANN202
        return self._db()[STREAMS]

    def acquire(self, user_id: str) -> Slot | None:
        """Take a free slot for a new stream of ``user_id``, or None when the user already holds
        ``limit`` live ones. Raises ``PyMongoError`` when the database is away."""
        holder = uuid.uuid4().hex
        moment = now()
        for n in range(self.limit):
            slot = Slot(f"{user_id}:{n}", holder)
            expires_at = moment + self.lease
            try:
                self._streams.insert_one({"_id": slot.id, "user_id": user_id, "holder": holder, "expires_at": expires_at})
                return slot
            except DuplicateKeyError:
                taken = self._streams.update_one({"_id": slot.id, "expires_at": {"$lt": moment}},
                                                 {"$set": {"holder": holder, "expires_at": expires_at}})
                if taken.modified_count:
                    return slot
        return None

    def renew(self, slot: Slot) -> bool:
        """Extend ``slot``'s lease; False when it is no longer held by its stream (taken over)."""
        renewed = self._streams.update_one({"_id": slot.id, "holder": slot.holder},
                                           {"$set": {"expires_at": now() + self.lease}})
        return renewed.matched_count == 1

    def release(self, slot: Slot) -> None:
        """Free ``slot`` (nothing if it was taken over already)."""
        self._streams.delete_one({"_id": slot.id, "holder": slot.holder})


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
        self.claim_lease = timedelta(seconds=claim_lease_seconds)

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
        return self._deliveries.find_one({"_id": delivery_id}, WITHOUT_EVENTS)

    def due(self, at: datetime, limit: int) -> list[str]:
        """Ids of pending deliveries whose next attempt is due by ``at``, most overdue first."""
        found = self._deliveries.find(
            {"status": "pending", "next_attempt_at": {"$lte": at}}, {"_id": 1}
        ).sort("next_attempt_at", ASCENDING).limit(limit)
        return [delivery["_id"] for delivery in found]

    def claim(self, delivery_id: str, at: datetime, message_id: str) -> dict[str, Any] | None:
        """Claim one attempt at a delivery still pending and due at ``at``, unless another
        mailer's claim is live: one conditional update, which also records the attempt before
        anything is sent (``attempts`` counts it, ``last_attempt_at``, the email's
        ``message_id``), so a mailer dying after each send still uses up the attempts.
        Returns the claimed delivery (its ``claimed_by`` names this claim), or None when it is
        finished, rescheduled or taken."""
        return self._deliveries.find_one_and_update(
            {
                "_id": delivery_id,
                "status": "pending",
                "next_attempt_at": {"$lte": at},
                "$or": [{"claimed_until": None}, {"claimed_until": {"$lte": at}}],
            },
            {
                "$set": {"claimed_by": uuid.uuid4().hex, "claimed_until": at + self.claim_lease,
                         "last_attempt_at": at, "message_id": message_id},
                "$inc": {"attempts": 1},
            },
            return_document=ReturnDocument.AFTER,  # no projection: FerretDB 1.24's findAndModify refuses one
        )

    def retry_later(self, claimed: dict[str, Any], *, error: str, retry_at: datetime) -> None:
        """Record that the attempt of a ``claimed`` delivery failed; the next is due at ``retry_at``."""
        self._deliveries.update_one(
            {"_id": claimed["_id"], "claimed_by": claimed["claimed_by"]},
            {"$set": {"last_error": error, "next_attempt_at": retry_at, "claimed_by": None, "claimed_until": None}},
        )

    def finish(self, claimed: dict[str, Any], outcome: dict[str, Any], events: Sequence[Event]) -> None:
        """Record the final ``outcome`` (status, attempts, …) of a ``claimed`` delivery, with ``events``.

        Nothing is recorded when the claim was lost (it outlived its lease and another mailer
        took the delivery): that mailer records its own outcome.
        """
        condition = {"_id": claimed["_id"], "claimed_by": claimed["claimed_by"]}
        outcome = {**outcome, "claimed_by": None, "claimed_until": None}
        if not events:
            self._deliveries.update_one(condition, {"$set": outcome})
            return
        with self.outbox.write(DELIVERIES, claimed["_id"], events) as pending:
            if self._deliveries.update_one(condition, pending.update({"$set": outcome})).matched_count == 0:
                raise ClaimLost(claimed["_id"])


class ClaimLost(Exception):
    """A mailer's claim on a delivery expired and another mailer took it; its outcome is dropped."""

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"the claim on delivery {delivery_id} was lost")
        self.delivery_id = delivery_id


class RecipientStore:
    """Who notifications go to: the newest ``user.*`` snapshot of each user."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    def apply(self, user: dict[str, Any]) -> bool:
        """Keep ``user`` (an event's snapshot) unless a newer version is stored. True if kept."""
        fields = {**{name: user[name] for name in ("email", "name", "role", "active")},
                  "email_verified": bool(user.get("email_verified", False))}
        return apply_if_newer(self._db()[RECIPIENTS], user["id"], int(user["version"]), fields)

    def get(self, user_id: str) -> dict[str, Any] | None:
        return self._db()[RECIPIENTS].find_one({"_id": user_id})


class ReminderStore:
    """The reminder schedule: each task's newest snapshot and the reminder it is owed."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    @property
    def _reminders(self):  # noqa: ANN202
        return self._db()[REMINDERS]

    def get(self, task_id: str) -> dict[str, Any] | None:
        return self._reminders.find_one({"_id": task_id})

    def replace(self, current: dict[str, Any] | None, task_id: str, fields: dict[str, Any]) -> bool:
        """Store ``fields`` as the task's schedule if it is still ``current`` (None: absent).

        Conditional on the fields the change was computed from, so a concurrent change (another
        consumer's snapshot, or the scheduler settling a reminder) makes this one match nothing.
        Returns False then: read again and recompute.
        """
        if current is None:
            try:
                self._reminders.insert_one({"_id": task_id, **fields})
            except DuplicateKeyError:
                return False
            return True
        read = ("version", "deleted", "reminder_due", "reminded_due")
        condition = {"_id": task_id, **{name: current.get(name) for name in read}}
        return self._reminders.update_one(condition, {"$set": fields}).matched_count == 1

    def settle(self, task_id: str, due: datetime, fields: dict[str, Any]) -> bool:
        """Set ``fields`` on the schedule if it still owes the reminder for ``due``; True if it did."""
        return self._reminders.update_one({"_id": task_id, "reminder_due": due}, {"$set": fields}).matched_count == 1

    def sent(self, task_id: str, due: datetime, outcome: str) -> None:
        """Record the ``outcome`` of the reminder for ``due`` decided as ``sending``."""
        self._reminders.update_one(
            {"_id": task_id, "reminded_due": due, "reminder_outcome": "sending"}, {"$set": {"reminder_outcome": outcome}}
        )

    def sending(self, decided_before: datetime) -> list[dict[str, Any]]:
        """Reminders decided before ``decided_before`` and still ``sending`` (their scheduler died)."""
        found = self._reminders.find({"reminder_outcome": "sending"})
        return [task for task in found if task["settled_at"] < decided_before]

    def due(self, until: datetime, limit: int) -> list[str]:
        """Tasks owed a reminder for a due date up to ``until``, earliest first."""
        found = self._reminders.find({"reminder_due": {"$lte": until}}, {"_id": 1}).sort("reminder_due", ASCENDING).limit(limit)
        return [reminder["_id"] for reminder in found]


class MailQuotas:
    """At most ``limit`` emails per recipient address and UTC day (``MAIL_MAX_PER_RECIPIENT_PER_DAY``)."""

    def __init__(self, db: Callable[[], Database], *, limit: int) -> None:
        self._db = db
        self.limit = limit

    @property
    def _quotas(self):  # noqa: ANN202
        return self._db()[MAIL_QUOTAS]

    @staticmethod
    def _key(address: str, at: datetime) -> str:
        return f"{address}:{at.astimezone(UTC).date().isoformat()}"

    def give_back(self, address: str, at: datetime) -> None:
        """Uncount an email :meth:`take` counted that did not go out."""
        self._quotas.update_one({"_id": self._key(address, at), "count": {"$gt": 0}}, {"$inc": {"count": -1}})

    def take(self, address: str, at: datetime) -> bool:
        """Count one email to ``address`` on ``at``'s UTC day; False, counting nothing, when the
        day's limit is reached."""
        day = at.astimezone(UTC).date()
        key = self._key(address, at)
        for _ in range(2):  # a day's first email races only its own insert
            if self._quotas.update_one({"_id": key, "count": {"$lt": self.limit}}, {"$inc": {"count": 1}}).matched_count:
                return True
            try:
                ends = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
                self._quotas.insert_one({"_id": key, "count": 1, "expires_at": ends})
                return True
            except DuplicateKeyError:
                continue
        return False
