"""The mailer: sends the email of each notification, apart from the consumers (DESIGN §4 notify).

Consumers only insert a pending delivery (:mod:`.notifications`), so a slow or failing SMTP
server never holds up the handling of other events. The mailer loop, in every worker replica,
scans the pending deliveries that are due and, for each:

1. claims one attempt: a conditional update of the delivery (still pending, still due, no live
   claim of another replica) that also records the attempt (``attempts``, ``last_attempt_at``,
   the email's ``message_id``) and returns the delivery as it now is; skipped when that matches
   nothing (finished, rescheduled or taken since the scan);
2. drops it (``cancelled``) when the recipient is deactivated; leaves it in the inbox only
   (``skipped``) when the recipient's address is not verified (but for the verification email
   itself) or got ``MAIL_MAX_PER_RECIPIENT_PER_DAY`` emails today; gives it up (``failed``)
   when its attempts ran out with no outcome recorded (mailers that died after sending);
3. sends it, with a ``Message-ID`` stable per notification;
4. records the outcome: ``sent`` with ``sent_at``; or, after a transient failure, ``last_error``
   and the next attempt after an exponential back-off; or ``failed`` when the server refused
   the message for good or the attempts ran out. A finished delivery carries its
   ``notification.sent`` event through the outbox (``channels`` lists where it arrived). The
   outcome of an email the server accepted is retried while the database fails, for as long as
   the claim lasts.

While the server is unreachable the scan stops at the first connection failure instead of
timing out once per pending message; each message keeps its own back-off. The one gap: a worker
that dies after the server accepted a message but before step 4 (or a database down for the
whole claim) leaves it pending, and it is sent again once the claim's lease expires; it carries
the same ``Message-ID``, which mail clients use to fold duplicates, and each such resend spends
one of its attempts. A mailer whose claim outlived its lease records nothing: the replica that
took over records the outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from pymongo.errors import PyMongoError
from taskflow_common.events.envelope import Event
from taskflow_common.events.publisher import backoff_seconds

from .mail import MailFailed, Transport
from .messages import EmailComposer
from .store import ClaimLost, DeliveryStore, MailQuotas, NotificationStore, RecipientStore, now

log = logging.getLogger(__name__)


class Mailer:
    """Delivers pending emails.

    Args:
        deliveries, notifications, recipients: the stores.
        composer: renders the emails.
        transport: SMTP or the Maildir.
        sent_event: builds ``notification.sent`` for a notification and its channels.
        quotas: the emails each address may still get today.
        retry_seconds, retry_max_seconds: back-off after the first failed attempt, doubling to the max.
        max_attempts: attempts before a delivery is given up as ``failed``.
        batch: deliveries examined per scan.
    """

    def __init__(
        self,
        deliveries: DeliveryStore,
        notifications: NotificationStore,
        recipients: RecipientStore,
        composer: EmailComposer,
        transport: Transport,
        sent_event: Callable[[dict[str, Any], list[str]], Event],
        quotas: MailQuotas,
        *,
        retry_seconds: float,
        retry_max_seconds: float,
        max_attempts: int,
        batch: int = 50,
    ) -> None:
        self.deliveries = deliveries
        self.notifications = notifications
        self.recipients = recipients
        self.composer = composer
        self.transport = transport
        self.sent_event = sent_event
        self.quotas = quotas
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = retry_max_seconds
        self.max_attempts = max_attempts
        self.batch = batch

    def send_due(self, at: datetime | None = None) -> int:
        """Attempt the deliveries due by ``at`` (now), up to ``batch`` of them.

        Returns:
            how many were attempted; 0 when the server is unreachable, so the caller waits
            before the next scan instead of trying the next message at once.
        """
        moment = at or now()
        started = time.monotonic()
        attempted = 0
        for delivery_id in self.deliveries.due(moment, self.batch):
            # Each claim is made at its own moment: a lease counted from the scan would already
            # be running out for the last deliveries of a slow batch.
            claimed_at = moment + timedelta(seconds=time.monotonic() - started)
            delivery = self.deliveries.claim(delivery_id, claimed_at, self.composer.message_id(delivery_id))
            if delivery is None:
                continue  # finished, rescheduled or taken by another mailer since the scan
            try:
                failure = self._attempt(delivery, claimed_at)
            except ClaimLost:
                log.warning("email %s: the claim outlived its lease; the mailer that took it over records it", delivery_id)
                continue
            if failure is not None and failure.server_down:
                return 0  # the rest would fail the same way; each keeps its own schedule
            attempted += 1
        return attempted

    def _attempt(self, delivery: dict[str, Any], moment: datetime) -> MailFailed | None:
        notification = self.notifications.get(delivery["_id"])
        if notification is None:  # cannot happen: the item is inserted before its delivery
            self._finish(delivery, None, {"status": "failed", "last_error": "notification missing"}, [])
            return None
        recipient = self.recipients.get(delivery["user_id"])
        attempts = delivery["attempts"]  # this one included (the claim counted it)
        if attempts > self.max_attempts:
            error = f"no outcome recorded for {self.max_attempts} attempts (the email may have been sent)"
            self._finish(delivery, notification, {"status": "failed", "last_error": error}, ["in_app"])
            return None
        if recipient is not None and not recipient["active"]:
            self._finish(delivery, notification, {"status": "cancelled", "last_error": "recipient deactivated"}, ["in_app"])
            return None
        try:
            if recipient is None:
                raise MailFailed("the recipient's address is not known yet")
            if notification["kind"] != "verify_email" and not recipient.get("email_verified"):
                self._finish(delivery, notification, {"status": "skipped", "last_error": "address not verified"}, ["in_app"])
                return None
            if not self.quotas.take(recipient["email"], moment):
                self._finish(delivery, notification, {"status": "skipped", "last_error": "daily email limit reached"}, ["in_app"])
                return None
            try:
                message = self._compose(notification, recipient, delivery.get("link"))
                self.transport.send(message)
            except MailFailed:
                self.quotas.give_back(recipient["email"], moment)  # only mail that went out counts
                raise
        except MailFailed as failure:
            self._failed(delivery, notification, attempts, failure, moment)
            return failure
        self._record_sent(delivery, notification)
        return None

    def _record_sent(self, delivery: dict[str, Any], notification: dict[str, Any]) -> None:
        """Record that the server accepted the email, retrying while the database fails and the
        claim lasts (after it, another mailer may send again: the outcome is left to it).

        Raises:
            PyMongoError: the database failed until the claim was nearly over.
        """
        outcome = {"status": "sent", "sent_at": now(), "last_error": None}  # an earlier attempt's error is over
        failures = 0
        while True:
            try:
                self._finish(delivery, notification, outcome, ["in_app", "email"])
                return
            except PyMongoError as error:
                failures += 1
                delay = backoff_seconds(failures, cap=5.0)
                if now() + timedelta(seconds=delay) >= delivery["claimed_until"]:
                    raise
                log.warning("email %s sent, its outcome not recorded yet (%s); again in %.1f s", delivery["_id"], error, delay)
                time.sleep(delay)

    def _compose(self, notification: dict[str, Any], recipient: dict[str, Any], link: dict[str, str] | None) -> EmailMessage:
        """The email, or a permanent :class:`MailFailed`: one message that cannot be rendered (a
        bug, bad data) is recorded as failed instead of stopping the mail of everyone else."""
        try:
            return self.composer.compose(notification, recipient, link=link)
        except Exception as error:
            log.exception("email %s cannot be composed", notification["_id"])
            raise MailFailed(f"cannot compose the email: {type(error).__name__}: {error}"[:300], permanent=True) from error

    def _failed(self, delivery: dict[str, Any], notification: dict[str, Any], attempts: int, failure: MailFailed, moment: datetime) -> None:
        delivery_id = delivery["_id"]
        error = str(failure)
        if failure.permanent or attempts >= self.max_attempts:
            log.error("email %s failed for good after %d attempt(s): %s", delivery_id, attempts, error)
            self._finish(delivery, notification, {"status": "failed", "last_error": error}, ["in_app"])
            return
        retry_at = moment + timedelta(seconds=backoff_seconds(attempts, base=self.retry_seconds, cap=self.retry_max_seconds))
        log.warning("email %s attempt %d failed (%s); next attempt at %s", delivery_id, attempts, error, retry_at.isoformat())
        self.deliveries.retry_later(delivery, error=error, retry_at=retry_at)

    def _finish(self, delivery: dict[str, Any], notification: dict[str, Any] | None, outcome: dict[str, Any], channels: list[str]) -> None:
        events = [self.sent_event(notification, channels)] if notification is not None else []
        self.deliveries.finish(delivery, {**outcome, "finished_at": now()}, events)
