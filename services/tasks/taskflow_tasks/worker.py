"""The tasks worker: ``python -m taskflow_tasks.worker`` runs the outbox relay and the consumer of
``user.deactivated`` / ``user.activated`` (queue ``tasks.user-status``)."""

from __future__ import annotations

import logging
import sys

from taskflow_common import deactivation
from taskflow_common.events import worker

from . import assemble
from .settings import TasksSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    service = assemble(TasksSettings())
    return worker.run([
        service.events.relay_loop(),
        service.events.consumer_loop(deactivation.subscription("tasks"), service.deactivated.handlers),
    ])


if __name__ == "__main__":
    sys.exit(main())
