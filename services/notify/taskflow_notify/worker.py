"""The notify worker: ``python -m taskflow_notify.worker``.

One thread each (and, where it talks to the broker, one connection each): the outbox relay
(``notification.sent``), the consumers of ``notify.inbox`` (``user.*``), ``notify.reminders``
(``task.*``) and ``notify.user-status`` (the API's deactivated-users policy), the reminder
scheduler and the mailer. Any number of replicas may run: consumers share their queues, and the
scheduler claims each reminder with a unique insert (its notification's derived id) and the
mailer each attempt at an email with a conditional update of its delivery.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping

from taskflow_common import deactivation
from taskflow_common.events import worker
from taskflow_common.events.consumer import Handler
from taskflow_common.events.envelope import EXCHANGE
from taskflow_common.events.topology import Subscription
from taskflow_common.events.worker import Loop, polling
from taskflow_common.observability import setup_process

from . import Notify, assemble
from .events import inbox_subscription, reminders_subscription
from .settings import NotifySettings
from .store import EXPIRIES

log = logging.getLogger(__name__)


def subscriptions(
    notify: Notify, *, exchange: str = EXCHANGE, queue_prefix: str = "notify"
) -> list[tuple[Subscription, Mapping[str, Handler]]]:
    """Each queue the worker consumes and its handlers; tests give their own exchange and names."""
    return [
        (inbox_subscription(queue_prefix, exchange=exchange), notify.handlers.inbox_handlers),
        (reminders_subscription(queue_prefix, exchange=exchange), notify.handlers.reminder_handlers),
        (dataclasses.replace(deactivation.subscription(queue_prefix), exchange=exchange), notify.deactivated.handlers),
    ]


def loops(notify: Notify, *, exchange: str = EXCHANGE, queue_prefix: str = "notify") -> list[Loop]:
    """Every loop of the worker: relay, consumers, scheduler, mailer, housekeeping."""
    return [
        notify.events.relay_loop(),
        *(notify.events.consumer_loop(subscription, handlers)
          for subscription, handlers in subscriptions(notify, exchange=exchange, queue_prefix=queue_prefix)),
        polling("notify-scheduler", notify.reminders.send_due, notify.settings.reminder_scan_seconds),
        polling("notify-mailer", notify.mailer.send_due, notify.settings.mail_poll_seconds),
        notify.events.housekeeping_loop([*EXPIRIES, *notify.events.expiries]),
    ]


def main() -> int:
    settings = NotifySettings.load()
    setup_process("notify", environment=settings.taskflow_env, log_level=settings.log_level)
    notify = assemble(settings)
    return worker.run(loops(notify), setup=[notify.events.topology_step()], collectors=[notify.events.collector])


if __name__ == "__main__":
    sys.exit(main())
