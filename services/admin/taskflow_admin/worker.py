"""The admin worker: ``python -m taskflow_admin.worker`` keeps the read models and the audit log
from every event, and the deactivated-users list. Admin emits no events, so it runs no relay."""

from __future__ import annotations

import logging
import sys

from taskflow_common import deactivation
from taskflow_common.events import worker

from . import assemble
from .events import SUBSCRIPTION
from .settings import AdminSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    admin = assemble(AdminSettings())
    return worker.run([
        admin.events.consumer_loop(SUBSCRIPTION, admin.administration.projections.handlers),
        admin.events.consumer_loop(deactivation.subscription("admin"), admin.deactivated.handlers),
    ])


if __name__ == "__main__":
    sys.exit(main())
