"""The auth worker: ``python -m taskflow_auth.worker`` runs the outbox relay (auth consumes no events)."""

from __future__ import annotations

import logging
import sys

from taskflow_common.events import worker

from . import assemble
from .settings import AuthSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    auth = assemble(AuthSettings())
    return worker.run([auth.events.relay_loop()])


if __name__ == "__main__":
    sys.exit(main())
