"""One service's event plumbing, built once from its settings: how a service creates events,
records them with its writes, relays them and runs its consumers, all through the shared
mechanism (see the package docstring for the guarantees)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..expiry import Expiry, Sweeper
from ..mongo import Indexes, Mongo
from . import broker, consumer, outbox, subscribers
from .consumer import Consumer, Handler
from .envelope import Event, new_event
from .outbox import Dispatcher, Outbox, OutboxCollector, OutboxStore
from .publisher import Publisher
from .relay import Relay
from .topology import Subscription, TopologyMissing, declare_all
from .worker import Loop, until_done


class ServiceEvents:
    """The events of service ``service``, stored in ``mongo``'s database, on broker ``rabbitmq_url``;
    ``outbox_collections`` are the collections whose documents carry events (the relay looks there).

    Attributes:
        outbox: ``with events.outbox.write(collection, id, [event]) as pending: ...`` in stores.
        indexes: the outbox and consumer collections' indexes, to create at start-up.
        expiries: what expires in those collections (the consumers' de-duplication records).
        collector: Prometheus gauges of the outbox depth, for the metrics of the service's worker
            (the process that has a database client and runs the relay).
    """

    def __init__(self, service: str, rabbitmq_url: str, mongo: Mongo, outbox_collections: Sequence[str] = ()) -> None:
        self.service = service
        self.rabbitmq_url = rabbitmq_url
        self.mongo = mongo
        self.store = OutboxStore(lambda: mongo.db, outbox_collections)
        self.outbox = Outbox(self.store, Dispatcher(self.store, lambda: Publisher(rabbitmq_url)))
        self.indexes: tuple[Indexes, ...] = (*outbox.indexes(outbox_collections), *consumer.INDEXES)
        self.expiries: tuple[Expiry, ...] = consumer.EXPIRIES
        self.collector = OutboxCollector(self.store)

    def event(self, type: str, subject: str, data: Mapping[str, Any], actor_id: str | None = None) -> Event:
        """A new event of this service about ``subject``, in the current trace."""
        return new_event(type, service=self.service, subject=subject, data=dict(data), actor_id=actor_id)

    def topology_step(self, subscriptions: Sequence[Subscription] = subscribers.CATALOG) -> Loop:
        """Declare ``subscriptions`` (the whole catalog's topology), retrying with back-off until
        it is done or the worker stops; for the worker's ``setup``, before its relay publishes."""

        def declare() -> None:
            connection = broker.connect(self.rabbitmq_url)
            try:
                declare_all(connection, subscriptions)
            finally:
                if connection.is_open:
                    connection.close()

        return until_done(f"{self.service}-topology", declare, expected=(TopologyMissing,))

    def relay_loop(self) -> Loop:
        """The outbox relay, with its own broker connection, for the service's worker."""
        return Loop(f"{self.service}-relay", Relay(self.store, Publisher(self.rabbitmq_url)).run)

    def housekeeping_loop(self, expiries: Sequence[Expiry]) -> Loop:
        """The sweep of ``expiries`` where the engine does not enforce TTL indexes (see
        :mod:`taskflow_common.expiry`), for the service's worker."""
        return Loop(f"{self.service}-housekeeping", Sweeper(lambda: self.mongo.db, expiries).run)

    def consumer_loop(self, subscription: Subscription, handlers: Mapping[str, Handler]) -> Loop:
        """A consumer of ``subscription``, with its own broker connection, for the service's worker."""
        running = Consumer(self.rabbitmq_url, subscription, handlers, lambda: self.mongo.db)
        return Loop(subscription.queue, running.run)
