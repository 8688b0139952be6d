"""A relay that SIGKILLs itself at a chosen point, to test crash recovery of the outbox.

    python -m tests.support.crashing_relay --crash before-publish|after-publish --lease-seconds 1 \\
        --mongodb-uri URI --database NAME --rabbitmq-url URL --exchange NAME
"""

from __future__ import annotations

import argparse
import os
import signal

from pymongo import MongoClient
from taskflow_common.events.envelope import Event
from taskflow_common.events.outbox import OutboxStore
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.relay import Relay


class CrashingPublisher(Publisher):
    """Dies just before the broker sees the event, or just after its confirm."""

    def __init__(self, crash: str, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.crash = crash

    def publish(self, event: Event, body: bytes | None = None, *, first: bool = False) -> None:
        if self.crash == "before-publish":
            os.kill(os.getpid(), signal.SIGKILL)
        super().publish(event, body, first=first)
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crash", choices=["before-publish", "after-publish"], required=True)
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    for option in ("--mongodb-uri", "--database", "--rabbitmq-url", "--exchange"):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    db = MongoClient(args.mongodb_uri, tz_aware=True)[args.database]
    relay = Relay(
        OutboxStore(lambda: db, ["notes"]),
        CrashingPublisher(args.crash, args.rabbitmq_url, exchange=args.exchange),
        lease_seconds=args.lease_seconds,
    )
    relay.run_once()
    raise SystemExit("the relay found nothing to publish")


if __name__ == "__main__":
    main()
