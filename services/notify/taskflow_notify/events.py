"""The events notify consumes and the one it emits (DESIGN §5).

Consumes, each queue in the worker (``python -m taskflow_notify.worker``):

- ``notify.inbox``: ``user.*`` snapshots keep the recipients read model (email, name, active;
  the newest version wins) and cause notifications: ``welcome`` on ``user.registered``,
  ``role_changed`` on ``user.role_changed``, ``reactivated`` on ``user.activated``,
  ``verify_email`` (its email carries the link) on ``user.email_verification_requested``. Nothing
  is created for a user deactivated at the event or in the newest known snapshot.
- ``notify.reminders``: ``task.*`` snapshots keep the reminder schedule (:mod:`.reminders`) and
  go to their owner's live feed (``GET /notifications/stream``).
- ``notify.user-status``: the shared deactivated-users policy of the API
  (:mod:`taskflow_common.deactivation`).

Every handler is idempotent per event: notifications have ids derived from their cause, read
models keep the newest version. Emits ``notification.sent`` once per notification, when its
delivery is over, through the outbox of its delivery document (see :mod:`.mailer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from taskflow_common.events import subscribers
from taskflow_common.events.envelope import Event
from taskflow_common.events.plumbing import ServiceEvents
from taskflow_common.events.topology import Subscription

from . import messages
from .notifications import Notifications
from .reminders import Reminders
from .store import FeedStore, RecipientStore

TASK_EVENTS = subscribers.NOTIFY_TASK_EVENTS


def inbox_subscription(queue_prefix: str = "notify", **options: Any) -> Subscription:
    """``notify.inbox`` of the catalog (:mod:`taskflow_common.events.subscribers`); tests rename it."""
    return dataclasses.replace(subscribers.NOTIFY_INBOX, queue=f"{queue_prefix}.inbox", **options)


def reminders_subscription(queue_prefix: str = "notify", **options: Any) -> Subscription:
    """``notify.reminders`` of the catalog; tests rename it."""
    return dataclasses.replace(subscribers.NOTIFY_REMINDERS, queue=f"{queue_prefix}.reminders", **options)


def _moment(event: Event) -> datetime:
    """When the event happened, to the millisecond (as stored)."""
    return event.time.replace(microsecond=event.time.microsecond // 1000 * 1000)


class NotificationData(BaseModel):
    """The ``data`` of ``notification.sent`` (catalog ``NotificationData``), less ``actor_id``."""

    id: str
    user_id: str
    kind: messages.Kind
    title: str
    subject_id: str
    channels: list[str]
    created_at: datetime


class NotifyEvents:
    """notify's handlers and the events it builds."""

    def __init__(
        self, events: ServiceEvents, recipients: RecipientStore, notifications: Notifications, reminders: Reminders,
        feed: FeedStore | None = None,
    ) -> None:
        self._events = events
        self.recipients = recipients
        self.notifications = notifications
        self.reminders = reminders
        self.feed = feed

    # -- emitted -----------------------------------------------------------------------------

    def sent(self, notification: dict[str, Any], channels: list[str]) -> Event:
        """``notification.sent`` for a stored notification delivered over ``channels``."""
        data = NotificationData(
            id=notification["_id"],
            user_id=notification["user_id"],
            kind=notification["kind"],
            title=notification["title"],
            subject_id=notification["subject_id"],
            channels=channels,
            created_at=notification["created_at"],
        )
        return self._events.event("notification.sent", notification["_id"], data.model_dump(mode="json"), notification["actor_id"])

    # -- consumed: user.* --------------------------------------------------------------------

    def _recipient_active(self, event: Event) -> bool:
        """Keep the event's snapshot; True when the user was active at the event *and* is in the
        newest known snapshot (so the outcome does not depend on the order of arrival)."""
        self.recipients.apply(event.data)
        recipient = self.recipients.get(event.data["id"])
        return bool(event.data["active"]) and recipient is not None and bool(recipient["active"])

    def handle_user_registered(self, event: Event) -> None:
        if self._recipient_active(event):
            self.notifications.create(messages.welcome(event.data, at=_moment(event), actor_id=event.data["actor_id"]))

    def handle_user_updated(self, event: Event) -> None:
        self.recipients.apply(event.data)

    def handle_user_role_changed(self, event: Event) -> None:
        if self._recipient_active(event):
            self.notifications.create(
                messages.role_changed(event.data, event_id=event.id, at=_moment(event), actor_id=event.data["actor_id"])
            )

    def handle_user_deactivated(self, event: Event) -> None:
        # Delivery stops by itself: the scheduler and the mailer read the recipient's state.
        self.recipients.apply(event.data)

    def handle_user_activated(self, event: Event) -> None:
        if self._recipient_active(event):
            self.notifications.create(
                messages.reactivated(event.data, event_id=event.id, at=_moment(event), actor_id=event.data["actor_id"])
            )

    def handle_user_email_verification_requested(self, event: Event) -> None:
        if self._recipient_active(event):
            self.notifications.create(
                messages.verify_email(event.data, event_id=event.id, at=_moment(event), actor_id=event.data["actor_id"]),
                link={
                    "page": event.data["verification_page"],
                    "nonce": event.data["verification_nonce"],
                    "email": event.data["email"],
                    "expires_at": event.data["verification_expires_at"],
                },
            )

    def handle_user_email_verified(self, event: Event) -> None:
        # From now on the mailer emails this user: it reads the recipient's state.
        self.recipients.apply(event.data)

    # -- consumed: task.* --------------------------------------------------------------------

    def handle_task_event(self, event: Event) -> None:
        self.reminders.apply(event)
        if self.feed is not None:
            task = {key: value for key, value in event.data.items() if key != "actor_id"}
            self.feed.append(f"task:{event.id}", event.data["owner_id"], "task", {"type": event.type, "task": task})

    @property
    def inbox_handlers(self) -> dict[str, Callable[[Event], None]]:
        return {
            "user.registered": self.handle_user_registered,
            "user.updated": self.handle_user_updated,
            "user.role_changed": self.handle_user_role_changed,
            "user.deactivated": self.handle_user_deactivated,
            "user.activated": self.handle_user_activated,
            "user.email_verification_requested": self.handle_user_email_verification_requested,
            "user.email_verified": self.handle_user_email_verified,
        }

    @property
    def reminder_handlers(self) -> dict[str, Callable[[Event], None]]:
        return dict.fromkeys(TASK_EVENTS, self.handle_task_event)
