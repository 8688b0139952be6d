"""The tasks worker: ``python -m taskflow_tasks.worker`` runs the outbox relay, the consumer of
``user.deactivated`` / ``user.activated`` (queue ``tasks.user-status``) and the housekeeping of
its de-duplication records, fencing placeholders and idempotency keys."""

from __future__ import annotations

import sys

from taskflow_common import deactivation
from taskflow_common.events import worker
from taskflow_common.observability import setup_process

from . import assemble, idempotency
from .settings import TasksSettings
from .store import EXPIRIES


def main() -> int:
    settings = TasksSettings.load()
    setup_process("tasks", environment=settings.taskflow_env, log_level=settings.log_level)
    service = assemble(settings)
    loops = [
        service.events.relay_loop(),
        service.events.consumer_loop(deactivation.subscription("tasks"), service.deactivated.handlers),
        service.events.housekeeping_loop([*EXPIRIES, *idempotency.EXPIRIES, *service.events.expiries]),
    ]
    return worker.run(loops, setup=[service.events.topology_step()], collectors=[service.events.collector])


if __name__ == "__main__":
    sys.exit(main())
