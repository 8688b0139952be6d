"""Due-date reminders (DESIGN §4 notify): one per task and due date, in-app plus email.

The schedule is a read model of the tasks service's events: one document per task holding its
newest snapshot (``version`` decides, events arrive in any order; a deletion is final) and
``reminder_due``, the due date a reminder is still owed for:

- created or updated, open (not ``done``), with a due date → owed for that date, unless the
  reminder for exactly that date was already sent;
- re-dated → owed for the new date (the old one's is no longer owed);
- completed → nothing owed (cancelled); reopened → owed again (rescheduled);
- deleted → nothing owed, ever.

The scheduler (:meth:`Reminders.send_due`, in every worker replica) looks for tasks owed a
reminder due within ``REMINDER_LEAD_MINUTES``. For each it re-reads the schedule and decides,
with one update conditional on the reminder still being owed for that date, that it is being
sent (``reminder_outcome: sending``); then it creates the notification (whose id is derived from
task and due date, so a second creation is a duplicate key, not a second reminder) and records
the outcome. A task completed, re-dated or deleted before the decision gets no reminder; one
changed after it gets the reminder that was decided. A scheduler that died between deciding
and creating leaves ``sending`` behind, which a later scan finishes. Every change of the
schedule is conditional on what it was computed from; one that lost a race is recomputed from
the fresh document.
Reminders that came due while notify was down are found by the same scan when it is back;
those whose task is already past due by more than a day are dropped as stale.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from taskflow_common.events.envelope import Event

from . import messages
from .notifications import Notifications
from .store import RecipientStore, ReminderStore, now

log = logging.getLogger(__name__)

LATE_LIMIT = timedelta(days=1)
"""A reminder missed (notify was down) is still sent until its task is this far past due."""
SENDING_GRACE = timedelta(minutes=1)
"""A reminder decided this long ago and still ``sending`` was left by a scheduler that died."""


def _timestamp(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Reminders:
    """The reminder schedule and the scheduler.

    Args:
        store: the schedule.
        recipients: to skip users known to be deactivated.
        notifications: where reminders are created.
        lead: how long before the due date a reminder is sent.
        batch: tasks examined per scan.
    """

    def __init__(
        self,
        store: ReminderStore,
        recipients: RecipientStore,
        notifications: Notifications,
        *,
        lead: timedelta,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.recipients = recipients
        self.notifications = notifications
        self.lead = lead
        self.batch = batch

    # -- the consumer side: task.* events ----------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold a ``task.*`` event's snapshot into the schedule (idempotent, order-independent).

        A ``task.created`` first tries the insert unread (a new task has no schedule yet): one
        command instead of two; a schedule there already (a later event came first, or this one
        again) makes it a duplicate key, and the snapshot is folded in as any other."""
        task = event.data
        task_id = str(task["id"])
        deleting = event.type == "task.deleted"
        current = None if event.type == "task.created" else self.store.get(task_id)
        while True:
            if current is not None and current.get("deleted"):
                return  # deletion is final: a late update must not bring the task back
            if current is not None and not deleting and current["version"] >= int(task["version"]):
                return  # this snapshot, or a newer one, is already applied
            due = _timestamp(task["due_date"])
            reminded = current.get("reminded_due") if current is not None else None
            owed = not deleting and task["status"] != "done" and due is not None and due != reminded
            fields = {
                "owner_id": task["owner_id"],
                "title": task["title"],
                "status": task["status"],
                "due_date": due,
                "version": max(int(task["version"]), current["version"] if current else 0),
                "deleted": deleting,
                "reminder_due": due if owed else None,
                "reminded_due": reminded,
            }
            if self.store.replace(current, task_id, fields):
                return
            current = self.store.get(task_id)

    # -- the scheduler -----------------------------------------------------------------------

    def send_due(self, at: datetime | None = None) -> int:
        """Send every reminder due by ``at`` (now) plus the lead time, up to ``batch`` of them.

        Returns:
            how many tasks were settled (reminded, or dropped as stale or deactivated).
        """
        moment = at or now()
        settled = 0
        for task_id in self.store.due(moment + self.lead, self.batch):
            settled += self._remind(task_id, moment)
        for task in self.store.sending(moment - SENDING_GRACE):
            settled += self._send(task, task["reminded_due"], moment)
        return settled

    def _remind(self, task_id: str, moment: datetime) -> bool:
        task = self.store.get(task_id)
        due = task.get("reminder_due") if task is not None else None
        if task is None or due is None or due > moment + self.lead:
            return False  # changed since the scan (re-dated, completed, or another replica sent it)
        if due < moment - LATE_LIMIT:
            return self._settle(task_id, due, "stale", moment)
        if (owner := self.recipients.get(task["owner_id"])) is not None and not owner["active"]:
            return self._settle(task_id, due, "owner deactivated", moment)
        if not self._settle(task_id, due, "sending", moment):
            return False
        return self._send({**task, "_id": task_id}, due, moment)

    def _send(self, task: dict[str, Any], due: datetime, moment: datetime) -> bool:
        """Create the reminder decided for ``due`` and record that it went out."""
        reminder = messages.reminder(task["_id"], task["owner_id"], task["title"], due, at=moment)
        created = self.notifications.create(reminder)
        outcome = "sent" if created else "already sent"
        self.store.sent(task["_id"], due, outcome)
        log.info("reminder for task %s due %s: %s", task["_id"], due.isoformat(), outcome)
        return True

    def _settle(self, task_id: str, due: datetime, outcome: str, moment: datetime) -> bool:
        """Record that the reminder for ``due`` is settled, unless the task no longer owes it
        (re-dated, completed or deleted meanwhile: the new state decides)."""
        fields: dict[str, Any] = {"reminder_due": None, "reminded_due": due, "reminder_outcome": outcome, "settled_at": moment}
        if not self.store.settle(task_id, due, fields):
            return False
        if outcome != "sending":
            log.info("reminder for task %s due %s: %s", task_id, due.isoformat(), outcome)
        return True
