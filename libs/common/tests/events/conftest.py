"""Fixtures for the event backbone's tests: a database, an exchange and queues of their own on
the session's real FerretDB and RabbitMQ, and background threads for relays and consumers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pika
import pytest
from pymongo.database import Database
from taskflow_common.events import broker
from taskflow_common.events.consumer import Consumer, Handler
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.topology import Subscription, declare_exchange

from tests.support.infra import Infra

from .helpers import declared


@pytest.fixture
def exchange(infra: Infra) -> str:
    """A topic exchange of this test's own, so tests never see each other's events."""
    name = f"test.events.{uuid.uuid4().hex[:8]}"
    connection = broker.connect(infra.rabbitmq_url)
    declare_exchange(connection.channel(), name)
    connection.close()
    return name


@pytest.fixture
def publisher(infra: Infra, exchange: str) -> Iterator[Publisher]:
    """A publisher to the test's exchange, closed after the test."""
    running = Publisher(infra.rabbitmq_url, exchange=exchange)
    yield running
    running.close()


@pytest.fixture
def subscription(exchange: str) -> Callable[..., Subscription]:
    def make(*bindings: str, retry_delays: tuple[float, ...] = (0.2, 0.4), **options: object) -> Subscription:
        return Subscription(
            queue=f"test.{uuid.uuid4().hex[:8]}", bindings=bindings, retry_delays=retry_delays, exchange=exchange, **options
        )

    return make


@dataclass
class Probe:
    """A plain queue bound to the test exchange, to see exactly what was published."""

    url: str
    queue: str

    def messages(self) -> list[tuple[pika.BasicProperties, bytes]]:
        """Drain and return everything in the queue."""
        connection = broker.connect(self.url)
        channel = connection.channel()
        drained = []
        while True:
            method, properties, body = channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                break
            drained.append((properties, body))
        connection.close()
        return drained


@pytest.fixture
def probe(infra: Infra, exchange: str) -> Probe:
    name = f"probe.{uuid.uuid4().hex[:8]}"
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(name, exchange, routing_key="#")
    connection.close()
    return Probe(infra.rabbitmq_url, name)


@dataclass
class Background:
    """Loops (relays, consumers) running on threads until the test ends."""

    stops: list[threading.Event] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, run: Callable[[threading.Event], None]) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=run, args=(stop,), daemon=True)
        thread.start()
        self.stops.append(stop)
        self.threads.append(thread)
        return stop

    def stop_all(self) -> None:
        for stop in self.stops:
            stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.fixture
def background() -> Iterator[Background]:
    running = Background()
    yield running
    running.stop_all()


@pytest.fixture
def consume(infra: Infra, db: Database, subscription, background: Background) -> Callable[..., Consumer]:
    """Start a consumer of ``types`` (its topology declared before this returns) on a thread."""

    def start(*types: str, handler: Handler, retry_delays: tuple[float, ...] = (0.2, 0.4), **options: object) -> Consumer:
        consumer = Consumer(
            infra.rabbitmq_url, subscription(*types, retry_delays=retry_delays), dict.fromkeys(types, handler), lambda: db, **options
        )
        declared(infra.rabbitmq_url, consumer.subscription)
        background.start(consumer.run)
        return consumer

    return start
