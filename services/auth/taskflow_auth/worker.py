"""The auth worker: ``python -m taskflow_auth.worker`` runs the outbox relay (auth consumes no
events) and the housekeeping of expired tokens, failure counters and leases."""

from __future__ import annotations

import sys

from taskflow_common.events import worker
from taskflow_common.observability import setup_process

from . import assemble
from .store import EXPIRIES
from .settings import AuthSettings


def main() -> int:
    settings = AuthSettings.load()
    setup_process("auth", environment=settings.taskflow_env, log_level=settings.log_level)
    auth = assemble(settings)
    return worker.run(
        [auth.events.relay_loop(), auth.events.housekeeping_loop([*EXPIRIES, *auth.events.expiries])],
        setup=[auth.events.topology_step()],
        collectors=[auth.events.collector],
    )


if __name__ == "__main__":
    sys.exit(main())
