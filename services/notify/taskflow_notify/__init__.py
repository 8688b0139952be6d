"""The notify service. The in-app inbox, email and due-date reminders, driven by events (DESIGN §4 notify).

Two processes share this assembly: the API (gunicorn, :func:`create_app`) and the worker
(``python -m taskflow_notify.worker``: outbox relay, consumers, reminder scheduler, mailer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import Flask
from taskflow_common import email_links
from taskflow_common.app import create_service_app
from taskflow_common.deactivation import DeactivatedUsers
from taskflow_common.events.plumbing import ServiceEvents
from taskflow_common.expiry import expiry_indexes
from taskflow_common.mongo import Mongo
from taskflow_common.settings import Environment
from taskflow_common.tokens import TokenVerifier

from . import mail
from .api import api
from .events import NotifyEvents
from .live import SLOT_LEASE_SECONDS, LiveFeed
from .mailer import Mailer
from .messages import EmailComposer
from .notifications import Notifications
from .reminders import Reminders
from .settings import NotifySettings
from .store import (
    DELIVERIES, EXPIRIES, INDEXES, DeliveryStore, FeedStore, MailQuotas, NotificationStore, RecipientStore, ReminderStore,
    StreamSlots,
)


@dataclass(frozen=True)
class Notify:
    """The notify service's parts, assembled once per process from its settings."""

    settings: NotifySettings
    mongo: Mongo
    events: ServiceEvents
    deactivated: DeactivatedUsers
    feed: FeedStore
    notifications: Notifications
    reminders: Reminders
    handlers: NotifyEvents
    mailer: Mailer


def assemble(settings: NotifySettings) -> Notify:
    """Connect the stores, build the domain, create the indexes."""
    mongo = Mongo(settings.mongodb_uri, settings.database_name, app_name="taskflow-notify",
                  timeout_seconds=settings.dependency_timeout_seconds)
    events = ServiceEvents("notify", settings.rabbitmq_url, mongo, [DELIVERIES])
    db = lambda: mongo.db  # noqa: E731 (resolved per call: fork-safe)
    store = NotificationStore(db)
    # A claim outlives the slowest SMTP exchange: some ten commands, each allowed the whole timeout.
    deliveries = DeliveryStore(db, events.outbox, claim_lease_seconds=60.0 + 12 * settings.smtp_timeout_seconds)
    recipients = RecipientStore(db)
    feed = FeedStore(db)
    notifications = Notifications(store, deliveries, feed)
    reminders = Reminders(ReminderStore(db), recipients, notifications, lead=timedelta(minutes=settings.reminder_lead_minutes))
    handlers = NotifyEvents(events, recipients, notifications, reminders, feed)
    mailer = Mailer(
        deliveries,
        store,
        recipients,
        EmailComposer(
            settings.mail_from,
            lead_minutes=settings.reminder_lead_minutes,
            link_key=email_links.load_key(
                settings.email_link_key_file, generate_missing=settings.taskflow_env is not Environment.PRODUCTION
            ),
        ),
        mail.transport(settings.smtp, mail_dir=settings.mail_dir, timeout_seconds=settings.smtp_timeout_seconds,
                       ca_file=settings.smtp_ca_file),
        handlers.sent,
        MailQuotas(db, limit=settings.mail_max_per_recipient_per_day),
        retry_seconds=settings.mail_retry_seconds,
        retry_max_seconds=settings.mail_retry_max_seconds,
        max_attempts=settings.mail_max_attempts,
    )
    mongo.ensure_indexes([*INDEXES, *events.indexes, *expiry_indexes(mongo.db, [*EXPIRIES, *events.expiries])])
    return Notify(settings, mongo, events, DeactivatedUsers(db), feed, notifications, reminders, handlers, mailer)


def create_app(settings: NotifySettings | None = None, *, verifier: TokenVerifier | None = None) -> Flask:
    """The notify service's WSGI app; ``settings`` default to the environment's, ``verifier`` to
    auth's JWKS at ``JWKS_URL`` (tests give one of their own issuer)."""
    notify = assemble(settings or NotifySettings.load())
    app = create_service_app(
        notify.settings,
        [api],
        mongo=notify.mongo,
        verifier=verifier,
        access_policy=notify.deactivated,
    )
    app.extensions["taskflow_notify.notifications"] = notify.notifications
    app.extensions["taskflow_notify.live"] = LiveFeed(
        notify.feed,
        StreamSlots(lambda: notify.mongo.db, limit=notify.settings.streams_per_user, lease_seconds=SLOT_LEASE_SECONDS),
        notify.deactivated,
    )
    return app
