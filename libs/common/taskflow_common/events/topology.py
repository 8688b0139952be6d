"""The broker topology, declared in code by whoever uses it (DESIGN §5).

- ``taskflow.events``: topic exchange, durable; routing key = event type.
- per consumer, a durable quorum queue ``<service>.<purpose>`` bound to the types it handles;
- ``<queue>.retry.<n>``: quorum queues holding a failed message for the n-th back-off delay,
  after which it dead-letters (at-least-once) straight back into ``<queue>``;
- ``<queue>.dlq``: the parking queue, for messages that failed every attempt, could not be
  parsed, or were redelivered more than ``delivery_limit`` times (a consumer that keeps crashing);
- ``<service>.queues``: a direct exchange per service, each of its queues bound by its own name:
  the consumer moves a message to a retry or parking queue through it, since no service's broker
  account may write to the default exchange (which reaches every queue, another service's too).

Declaring is idempotent: the arguments are fixed by the subscription, so many replicas declare
the same thing at once without conflict. :func:`declare_all` declares a whole topology (each
worker declares :data:`.subscribers.CATALOG` at start-up) and :func:`definitions` writes it in the
broker's definitions format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

from .envelope import EXCHANGE

DEFAULT_RETRY_DELAYS = (1.0, 5.0, 30.0)
DEFAULT_DELIVERY_LIMIT = 10
ACCESS_REFUSED = 403
NOT_FOUND = 404


class TopologyMissing(Exception):
    """A queue of the topology does not exist and this broker account may not declare it."""


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
    def queues_exchange(self) -> str:
        """The service's own direct exchange that reaches each of its queues by name."""
        return queues_exchange(self.queue)

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

    def queue_arguments(self) -> dict[str, dict[str, Any]]:
        """Each queue of the subscription (parking, consumer, retry queues) → its declare arguments."""
        result: dict[str, dict[str, Any]] = {self.dead_letter_queue: {"x-queue-type": "quorum"}}
        result[self.queue] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_letter_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        for attempt, delay in enumerate(self.retry_delays, start=1):
            result[self.retry_queue(attempt)] = {
                "x-queue-type": "quorum",
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        return result


def queues_exchange(queue: str) -> str:
    """``<service>.queues`` for a queue ``<service>.<purpose>…``: the exchange its owner reaches it by."""
    return f"{queue.partition('.')[0]}.queues"


def declare_exchange(channel: BlockingChannel, exchange: str = EXCHANGE) -> None:
    """The durable topic exchange every event is published to."""
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


def ensure_exchange(connection: pika.BlockingConnection, exchange: str = EXCHANGE) -> None:
    """Declare the events exchange; where this account may not (least privilege: the broker's
    definitions declare it, and no service may delete or retype it), check that it exists.

    Raises:
        TopologyMissing: the exchange does not exist and this account may not declare it.
        pika.exceptions.AMQPError: the broker went away or refused something else.
    """
    _declare_or_find(connection, lambda channel: declare_exchange(channel, exchange), exchanges=(exchange,))


def _declare_or_find(
    connection: pika.BlockingConnection,
    declare_with: Callable[[BlockingChannel], None],
    *,
    exchanges: Sequence[str],
    queues: Sequence[str] = (),
) -> None:
    """Run ``declare_with`` on a channel of its own; if the broker refuses it (403), check with
    passive declares on a fresh channel that ``exchanges`` and ``queues`` exist.

    Raises:
        TopologyMissing: one of them does not exist.
        pika.exceptions.AMQPError: the broker went away or refused something else.
    """
    channel = connection.channel()
    try:
        declare_with(channel)
    except ChannelClosedByBroker as error:
        if error.reply_code != ACCESS_REFUSED:
            raise
        channel = connection.channel()
        checks = [(name, lambda name=name: channel.queue_declare(name, passive=True)) for name in queues]
        checks += [(name, lambda name=name: channel.exchange_declare(name, passive=True)) for name in exchanges]
        for name, check in checks:
            try:
                check()
            except ChannelClosedByBroker as missing:
                if missing.reply_code != NOT_FOUND:
                    raise
                raise TopologyMissing(f"{name} does not exist and this account may not declare it") from None
    if channel.is_open:
        channel.close()


def declare(channel: BlockingChannel, subscription: Subscription) -> None:
    """Declare ``subscription``'s exchange, queue, bindings, retry queues and parking queue."""
    declare_exchange(channel, subscription.exchange)
    arguments = subscription.queue_arguments()
    channel.queue_declare(subscription.dead_letter_queue, durable=True, arguments=arguments[subscription.dead_letter_queue])
    channel.queue_declare(subscription.queue, durable=True, arguments=arguments[subscription.queue])
    for pattern in subscription.bindings:
        channel.queue_bind(subscription.queue, subscription.exchange, routing_key=pattern)
    for attempt in range(1, subscription.max_attempts):
        queue = subscription.retry_queue(attempt)
        channel.queue_declare(queue, durable=True, arguments=arguments[queue])
    channel.exchange_declare(subscription.queues_exchange, exchange_type="direct", durable=True)
    for queue in arguments:
        channel.queue_bind(queue, subscription.queues_exchange, routing_key=queue)


def ensure(connection: pika.BlockingConnection, subscription: Subscription) -> None:
    """Declare ``subscription``; where this account may not (another service's queues, or its own
    under least privilege, whose dead-letter exchange is the default one it may not write to: the
    broker's definitions declare them), check that its queues and its queues exchange exist.

    Raises:
        TopologyMissing: a queue or exchange this account may not declare does not exist.
        pika.exceptions.AMQPError: the broker went away or refused something else.
    """
    _declare_or_find(
        connection, lambda channel: declare(channel, subscription),
        exchanges=(subscription.exchange, subscription.queues_exchange), queues=tuple(subscription.queue_arguments()),
    )


def declare_all(connection: pika.BlockingConnection, subscriptions: Iterable[Subscription]) -> None:
    """:func:`ensure` each of ``subscriptions`` (same errors)."""
    for subscription in subscriptions:
        ensure(connection, subscription)


def definitions(subscriptions: Iterable[Subscription], vhost: str = "/") -> dict[str, list[dict[str, Any]]]:
    """``subscriptions`` as the ``exchanges``, ``queues`` and ``bindings`` of RabbitMQ's
    definitions file (the format ``load_definitions`` imports), exactly what :func:`declare` declares."""
    exchanges: dict[str, dict[str, Any]] = {}
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []

    def exchange(name: str, kind: str) -> None:
        exchanges.setdefault(name, {
            "name": name, "vhost": vhost, "type": kind, "durable": True, "auto_delete": False,
            "internal": False, "arguments": {},
        })

    def bind(source: str, queue: str, routing_key: str) -> None:
        bindings.append({
            "source": source, "vhost": vhost, "destination": queue,
            "destination_type": "queue", "routing_key": routing_key, "arguments": {},
        })

    for subscription in subscriptions:
        exchange(subscription.exchange, "topic")
        exchange(subscription.queues_exchange, "direct")
        for name, arguments in subscription.queue_arguments().items():
            queues.append({"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments})
            bind(subscription.queues_exchange, name, name)
        for pattern in subscription.bindings:
            bind(subscription.exchange, subscription.queue, pattern)
    return {"exchanges": list(exchanges.values()), "queues": queues, "bindings": bindings}
