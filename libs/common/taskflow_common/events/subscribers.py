"""Every subscriber of the event catalog (docs/asyncapi.yaml): the one list of TaskFlow's broker
topology (DESIGN §5).

Each worker declares all of it at start-up, before its relay publishes or its consumers run
(:func:`.topology.declare_all`), and ``deploy/rabbitmq/definitions.json`` carries the same queues
and bindings for Compose and Kubernetes, where a service's broker user may declare only its own
queues (``python -m taskflow_common.events.subscribers deploy/rabbitmq/definitions.json`` writes
them there; a test checks they agree). So once any queue of the catalog exists, every one does,
and a publish that one queue confirmed (``mandatory``) reached every subscriber's queue.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..deactivation import subscription as user_status
from .topology import Subscription, definitions

NOTIFY_USER_EVENTS = (
    "user.registered", "user.updated", "user.role_changed", "user.deactivated", "user.activated",
    "user.email_verification_requested", "user.email_verified",
)
"""What notify's inbox keeps its recipients from and sends notifications for."""
NOTIFY_TASK_EVENTS = ("task.created", "task.updated", "task.completed", "task.deleted")
"""What notify's reminder schedule is kept from."""

ADMIN_READ_MODELS = Subscription("admin.read-models", ("user.*", "task.*", "notification.*"))
NOTIFY_INBOX = Subscription("notify.inbox", NOTIFY_USER_EVENTS)
NOTIFY_REMINDERS = Subscription("notify.reminders", NOTIFY_TASK_EVENTS)

CATALOG: tuple[Subscription, ...] = (
    user_status("tasks"),
    ADMIN_READ_MODELS,
    user_status("admin"),
    NOTIFY_INBOX,
    NOTIFY_REMINDERS,
    user_status("notify"),
)
"""Every consumer queue of every service, with its bindings and retry policy."""


def write_definitions(path: Path) -> None:
    """Replace the queues and bindings of the RabbitMQ definitions file at ``path`` by
    :data:`CATALOG`'s, keeping everything else (users, permissions, exchanges)."""
    document = json.loads(path.read_text())
    document.update(definitions(CATALOG))
    path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    write_definitions(Path(sys.argv[1]))
