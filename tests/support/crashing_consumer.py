"""A consumer process for crash and shutdown tests of the consumer runner.

    python -m tests.support.crashing_consumer --queue Q --binding TYPE --exchange X \\
        --mongodb-uri URI --database NAME --rabbitmq-url URL [--crash-after N] [--handler-seconds S]

Its handler notes its start in ``started``, then appends one row per run to ``effects`` (not
idempotent on purpose, so a second application shows). ``--crash-after N`` SIGKILLs the process right after the N-th event is
recorded as processed and before it is acked. ``--handler-seconds`` makes each run that long.
It runs under :func:`taskflow_common.events.worker.run`, so SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from pymongo import MongoClient
from taskflow_common.events.consumer import Consumer
from taskflow_common.events.envelope import Event
from taskflow_common.events.topology import Subscription
from taskflow_common.events.worker import Loop, run


class CrashingConsumer(Consumer):
    def __init__(self, *args: object, crash_after: int | None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.crash_after = crash_after
        self.recorded = 0

    def _record_processed(self, event: Event) -> None:
        super()._record_processed(event)
        self.recorded += 1
        if self.crash_after is not None and self.recorded >= self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser()
    for option in ("--queue", "--binding", "--exchange", "--mongodb-uri", "--database", "--rabbitmq-url"):
        parser.add_argument(option, required=True)
    parser.add_argument("--crash-after", type=int)
    parser.add_argument("--handler-seconds", type=float, default=0.0)
    args = parser.parse_args()
    db = MongoClient(args.mongodb_uri, tz_aware=True)[args.database]

    def handle(event: Event) -> None:
        db["started"].insert_one({"event_id": event.id})
        time.sleep(args.handler_seconds)
        db["effects"].insert_one({"event_id": event.id, "subject": event.subject})

    subscription = Subscription(args.queue, (args.binding,), retry_delays=(0.2,), exchange=args.exchange)
    consumer = CrashingConsumer(
        args.rabbitmq_url, subscription, {args.binding: handle}, lambda: db, prefetch=8, crash_after=args.crash_after
    )
    return run([Loop("consumer", consumer.run)])


if __name__ == "__main__":
    sys.exit(main())
