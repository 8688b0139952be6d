"""The parking queues of the whole system, as admin's statistics count them (DESIGN §4 admin,
``events.dead_lettered``).

Each service parks the events its consumers gave up on in ``<queue>.dlq`` and records why in its
own database; the broker parks some on its own too (a message returned ``x-delivery-limit`` times
with no record). The broker's queues are the one place that has them all, so the admin worker
reads the depth of every parking queue of the catalog (a passive declare each, which a service's
broker account may do on any queue) every :data:`INTERVAL_SECONDS` and keeps it in admin's
database; the statistics read it from there, so they answer while the broker is down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pymongo.database import Database
from taskflow_common.events import broker, subscribers
from taskflow_common.events.topology import Subscription

PARKING_QUEUES = "parking_queues"
INTERVAL_SECONDS = 15.0


class ParkingQueues:
    """The depths of the parking queues of ``subscriptions`` (the whole catalog by default).

    Args:
        db: admin's database, resolved per call.
        rabbitmq_url: ``RABBITMQ_URL``.
    """

    def __init__(
        self, db: Callable[[], Database], rabbitmq_url: str, subscriptions: Sequence[Subscription] = subscribers.CATALOG
    ) -> None:
        self._db = db
        self.rabbitmq_url = rabbitmq_url
        self.subscriptions = subscriptions

    def observe(self) -> None:
        """Read each parking queue's depth from the broker and store it with the moment read.

        Raises:
            pika.exceptions.AMQPError: the broker is unreachable or a queue does not exist yet.
            pymongo.errors.PyMongoError: the database failed.
        """
        connection = broker.connect(self.rabbitmq_url)
        try:
            channel = connection.channel()
            depths = {
                subscription.dead_letter_queue: channel.queue_declare(
                    subscription.dead_letter_queue, passive=True
                ).method.message_count
                for subscription in self.subscriptions
            }
        finally:
            if connection.is_open:
                connection.close()
        observed_at = datetime.now(UTC)
        for queue, messages in depths.items():
            self._db()[PARKING_QUEUES].update_one(
                {"_id": queue}, {"$set": {"messages": messages, "observed_at": observed_at}}, upsert=True
            )


def parked_messages(db: Database) -> int:
    """Messages in every parking queue at the last observation (0 before the first)."""
    return sum(queue["messages"] for queue in db[PARKING_QUEUES].find({}, {"messages": 1}))
