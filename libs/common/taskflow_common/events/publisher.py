"""Publishing events so that "sent" means the broker has them (DESIGN §5).

Every publish is persistent (delivery mode 2), ``mandatory`` and waits for the publisher
confirm: :meth:`Publisher.publish` returns only when the broker has routed the message to at
least one queue and taken responsibility for it. A message no queue is bound for comes back
(``basic.return``) and raises :class:`Unroutable`; it is never counted as sent.
"""

from __future__ import annotations

import logging

import pika
from opentelemetry import propagate, trace
from pika.exceptions import NackError, UnroutableError
from prometheus_client import Counter

from . import broker
from .envelope import CONTENT_TYPE, EXCHANGE, Event
from .topology import ensure_exchange

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

FIRST_PUBLICATION_HEADER = "x-taskflow-first-publication"
"""Set (to ``"1"``) on the dispatcher's hand-off of an event, right after its write, at the first
try on the connection (DESIGN §5): nothing has published that event before, unless the relay took
its document meanwhile (a hand-off running past the relay's wait). A consumer applies such a
message on its first delivery, within that wait of the event's time, without looking up its
de-duplication record; any other message (the relay's, a second try on a new connection, a
redelivery, an older event) may repeat one and is looked up. A hint only: a publisher that sets it
on a repeat makes the consumer run its handler, idempotent per event id, once more."""

PUBLISHED = Counter("events_published_total", "Events confirmed by the broker.", ["type"])
PUBLISH_FAILURES = Counter(
    "events_publish_failures_total", "Events the broker did not take, by reason.", ["type", "reason"]
)


class PublishFailed(Exception):
    """The broker did not confirm the event: unreachable, connection lost, or it nacked."""


class Unroutable(PublishFailed):
    """No queue is bound for the event's type; the broker returned it."""


class Publisher:
    """A confirming publisher on one connection. Not thread-safe: one per thread.

    Args:
        url: ``RABBITMQ_URL``.
        exchange: where events go (``taskflow.events``).
        timeout_seconds: bound on connecting and on one confirm round-trip.
        heartbeat_seconds: AMQP heartbeat to negotiate (None: the broker's default).
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = EXCHANGE,
        timeout_seconds: float = 5.0,
        heartbeat_seconds: int | None = None,
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.timeout = timeout_seconds
        self.heartbeat = heartbeat_seconds
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _open(self):  # noqa: ANN202 (pika's channel type)
        if self._channel is None or self._channel.is_closed:
            self.close()
            self._connection = broker.connect(self.url, timeout_seconds=self.timeout, heartbeat_seconds=self.heartbeat)
            ensure_exchange(self._connection, self.exchange)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def publish(self, event: Event, body: bytes | None = None, *, first: bool = False) -> None:
        """Publish ``event`` (its encoded ``body`` if already at hand) and wait for the confirm.

        A connection found dead (e.g. closed by the broker while idle) is reopened once. ``first``:
        this is the event's hand-off, marked :data:`FIRST_PUBLICATION_HEADER` unless it takes the
        second try (the first may have reached the broker before the connection died).

        Raises:
            Unroutable: no queue is bound for ``event.type``.
            PublishFailed: the broker is unreachable or nacked the message.
        """
        payload = body if body is not None else event.encode()
        # The publish span continues the trace of the request that made the event, wherever and
        # whenever it is published (right after the write, or later by the relay).
        with tracer.start_as_current_span(
            f"{event.type} publish",
            context=propagate.extract(event.trace_headers),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.exchange,
                "messaging.rabbitmq.destination.routing_key": event.type,
                "messaging.message.id": event.id,
            },
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
            self._publish(event, payload, headers or event.trace_headers, first=first)

    def _publish(self, event: Event, payload: bytes, headers: dict[str, str], *, first: bool) -> None:
        def properties(marked: bool) -> pika.BasicProperties:
            return pika.BasicProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=event.id,
                type=event.type,
                timestamp=int(event.time.timestamp()),
                headers={**headers, FIRST_PUBLICATION_HEADER: "1"} if marked else headers,
            )

        for attempt in (1, 2):
            try:
                self._open().basic_publish(self.exchange, event.type, payload, properties(first and attempt == 1),
                                           mandatory=True)
                PUBLISHED.labels(event.type).inc()
                return
            except UnroutableError:
                PUBLISH_FAILURES.labels(event.type, "unroutable").inc()
                log.warning("event %s of type %s is unroutable: no queue is bound for it", event.id, event.type)
                raise Unroutable(f"no queue is bound for {event.type}") from None
            except NackError:
                PUBLISH_FAILURES.labels(event.type, "nacked").inc()
                raise PublishFailed(f"the broker nacked event {event.id}") from None
            except broker.CONNECTION_ERRORS as error:
                self.close()
                if attempt == 2:
                    PUBLISH_FAILURES.labels(event.type, "unreachable").inc()
                    raise PublishFailed(f"broker unreachable: {type(error).__name__}") from error

    def keepalive(self) -> None:
        """Let an idle connection answer heartbeats; drops it if the broker has gone."""
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.process_data_events(time_limit=0)
            except broker.CONNECTION_ERRORS:
                self.close()

    def close(self) -> None:
        """Close the connection, if any; never raises."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except broker.CONNECTION_ERRORS:
                pass


def backoff_seconds(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential back-off for the ``attempt``-th consecutive failure (1-based), capped."""
    return min(cap, base * 2 ** (attempt - 1))

