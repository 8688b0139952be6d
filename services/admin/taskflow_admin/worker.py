"""The admin worker: ``python -m taskflow_admin.worker`` keeps the read models and the audit log
from every event, and the deactivated-users list; once, it indexes for search the users stored
before the search index existed; it keeps the depths of the system's parking queues for the
statistics. Admin emits no events, so it runs no relay."""

from __future__ import annotations

import logging
import sys

from taskflow_common import deactivation
from taskflow_common.events import subscribers, worker
from taskflow_common.events.worker import Loop, polling, until_done
from taskflow_common.observability import setup_process

from . import assemble, parking
from .settings import AdminSettings
from .store import ReadModels

log = logging.getLogger(__name__)


def search_index_loop(read_models: ReadModels) -> Loop:
    """Indexes for search the users stored before the search index existed, once, retrying while
    that fails (see :meth:`ReadModels.index_existing_users`)."""

    def index() -> None:
        indexed = read_models.index_existing_users()
        if indexed:
            log.info("search index: %d existing users indexed", indexed)

    return until_done("admin-search-index", index)


def main() -> int:
    settings = AdminSettings.load()
    setup_process("admin", environment=settings.taskflow_env, log_level=settings.log_level)
    admin = assemble(settings)
    return worker.run([
        admin.events.consumer_loop(subscribers.ADMIN_READ_MODELS, admin.administration.projections.handlers),
        admin.events.consumer_loop(deactivation.subscription("admin"), admin.deactivated.handlers),
        admin.events.housekeeping_loop(admin.events.expiries),
        search_index_loop(admin.administration.read_models),
        polling("admin-parking-queues", parking.ParkingQueues(lambda: admin.mongo.db, settings.rabbitmq_url).observe,
                parking.INTERVAL_SECONDS),
    ], setup=[admin.events.topology_step()])


if __name__ == "__main__":
    sys.exit(main())
