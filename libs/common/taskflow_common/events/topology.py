"""The broker topology, declared in code by whoever uses it (DESIGN §5).

- ``taskflow.events``: topic exchange, durable; routing key = event type.
- per consumer, a durable quorum queue ``<service>.<purpose>`` bound to the types it handles;
- ``<queue>.retry.<n>``: quorum queues holding a failed message for the n-th back-off delay,
  after which it dead-letters (at-least-once) straight back into ``<queue>``;
- ``<queue>.dlq``: the parking queue, for messages that failed every attempt, could not be
  parsed, or were redelivered more than ``delivery_limit`` times (a consumer that keeps crashing).

Declaring is idempotent: the arguments are fixed by the subscription, so many replicas declare
the same thing at once without conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pika.adapters.blocking_connection import BlockingChannel

from .envelope import EXCHANGE

DEFAULT_RETRY_DELAYS = (1.0, 5.0, 30.0)
DEFAULT_DELIVERY_LIMIT = 10


@dataclass(frozen=True)
class Subscription:
    """A consumer's queue and what it receives.

    Attributes:
        queue: ``<service>.<purpose>``, e.g. ``notify.reminders``.
        bindings: routing-key patterns on ``taskflow.events`` (``task.*``, ``user.deactivated``).
        retry_delays: seconds before the 2nd, 3rd, … attempt; after the last the message is parked.
        delivery_limit: redeliveries (consumer crashes, nacks) before the broker parks a message.
    """

    queue: str
    bindings: tuple[str, ...]
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    exchange: str = field(default=EXCHANGE)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @property
    def max_attempts(self) -> int:
        """Handler runs per message, the first included."""
        return len(self.retry_delays) + 1

    def retry_queue(self, attempt: int) -> str:
        """Where a message waits after its ``attempt``-th failure (1-based)."""
        return f"{self.queue}.retry.{attempt}"


def declare_exchange(channel: BlockingChannel, exchange: str = EXCHANGE) -> None:
    """The durable topic exchange every event is published to."""
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


def declare(channel: BlockingChannel, subscription: Subscription) -> None:
    """Declare ``subscription``'s exchange, queue, bindings, retry queues and parking queue."""
    declare_exchange(channel, subscription.exchange)
    channel.queue_declare(subscription.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_declare(
        subscription.queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": subscription.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": subscription.dead_letter_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    for pattern in subscription.bindings:
        channel.queue_bind(subscription.queue, subscription.exchange, routing_key=pattern)
    for attempt, delay in enumerate(subscription.retry_delays, start=1):
        channel.queue_declare(
            subscription.retry_queue(attempt),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": subscription.queue,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
