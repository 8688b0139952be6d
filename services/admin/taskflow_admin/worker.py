"""The admin worker: ``python -m taskflow_admin.worker`` keeps the read models and the audit log
from every event, and the deactivated-users list. Admin emits no events, so it runs no relay."""

from __future__ import annotations

import sys

from taskflow_common import deactivation
from taskflow_common.events import subscribers, worker
from taskflow_common.observability import setup_process

from . import assemble
from .settings import AdminSettings


def main() -> int:
    settings = AdminSettings.load()
    setup_process("admin", environment=settings.taskflow_env, log_level=settings.log_level)
    admin = assemble(settings)
    return worker.run([
        admin.events.consumer_loop(subscribers.ADMIN_READ_MODELS, admin.administration.projections.handlers),
        admin.events.consumer_loop(deactivation.subscription("admin"), admin.deactivated.handlers),
        admin.events.housekeeping_loop(admin.events.expiries),
    ], setup=[admin.events.topology_step()])


if __name__ == "__main__":
    sys.exit(main())
