"""The consumer runner: every TaskFlow consumer handles events through it (DESIGN §5).

For each message of its queue, in order of arrival (prefetch-limited):

1. parse the CloudEvent; a message that is not one, or an event of the catalog whose ``source``
   is not its type's owner (a forgery: :func:`.envelope.forged`) or that did not come the way
   its owner's events come (:func:`_untrusted_path`; one coming back through the consumer's own
   queues must be a message it sent back itself, :data:`RETRIED`), is parked at once; so is one
   the broker has delivered ``delivery_limit`` times already with no outcome (a consumer that
   crashes on it): this is its last delivery, and the broker would park it on its own, unrecorded,
   if it came back once more;
2. skip it if its event id is in ``processed_events`` (the record has a unique ``_id`` and is
   kept for :data:`DEDUPLICATION_WINDOW`); the look-up is left out for the first delivery of an
   event's hand-off (:data:`~.publisher.FIRST_PUBLICATION_HEADER`) within the relay's wait of the
   event's time, which nothing published before it: :func:`_may_repeat`;
3. run the handler for its type, with the producer's trace context current;
4. on success record the id in ``processed_events``, then ack;
5. on failure republish it (confirmed) to the next retry queue, or after the last attempt to the
   parking queue ``<queue>.dlq``, then ack. Other messages keep flowing meanwhile.

An unreachable database is not the event's fault and spends none of its attempts: the consumer
keeps the message in hand (unacked, so nothing returns to the queue to count as a delivery),
answers heartbeats, pings the database with back-off and, once it answers, processes the message
from the start. So does any error of the consumer's own reads and writes (the de-duplication and
parking records), which a busy or failing database may answer with an ``OperationFailure``, and a
busy database under the handler (:func:`_database_unavailable`): only the handler's own failures
count as attempts.

No message holds back the others: one that our own code cannot process (an id the database cannot
store, a bug) is parked alone, with its error, and never makes the consumer reconnect, which would
return every prefetched message behind it with its delivery count raised. After any reconnect the
consumer takes one message at a time until ``prefetch`` of them are done, so a message that breaks
the connection itself comes back alone. The attempt header is taken as 1 to ``max_attempts`` whatever it says.

The ack comes only after the handler's own write and the record, so a crash redelivers and
the record skips what was applied. A crash *between* the handler's write and the record can
still redeliver an applied event, and a hand-off that raced the relay's publication of the same
event (clocks apart, or a document the relay had due already) may arrive marked as first, so
handlers must be idempotent per event id (upsert by entity or event id, or guard the write with
the event id); the record makes the repeats cheap.

Each handler runs on a thread of its own while the connection thread keeps answering
heartbeats; one that runs over :data:`HANDLER_TIMEOUT` (a call that never returns) is left behind
and counts as a failed attempt, so it holds back nothing (handlers are idempotent, should it
finish after all).
:meth:`Consumer.run` reconnects with back-off after broker restarts, and declares and subscribes
again when the broker cancels its subscription (the queue deleted, or re-declared elsewhere: a
``basic.cancel`` would otherwise stop the consumer in silence); when asked to stop, it
finishes the message in hand before closing (unacked prefetched messages return to the queue).
One connection per consumer thread: pika's BlockingConnection is not thread-safe.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from pika.exceptions import NackError, UnroutableError
from prometheus_client import Counter, Histogram
from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from ..expiry import Expiry
from ..mongo import Indexes
from . import broker
from .envelope import Event, MalformedEvent, forged
from .outbox import HANDOFF_WINDOW
from .publisher import FIRST_PUBLICATION_HEADER, backoff_seconds
from .topology import Subscription, ensure

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

PROCESSED = "processed_events"
PARKED = "dead_letters"
RETRIED = "retried_events"
"""Each message a consumer sent to one of its retry queues: its :func:`record_key` → the SHA-256 of
its body. Only such a message (or one it parked trusted, whose ``dead_letters`` record is keyed by
that digest) may come back through the consumer's own queues exchange or the default exchange: the
service's own broker account can write there too, so the way alone vouches for nothing."""
RETRY_RECORD_WINDOW = timedelta(days=7)
INDEXES = (Indexes(PARKED, (IndexModel([("queue", ASCENDING), ("parked_at", ASCENDING)]),)),)
DEDUPLICATION_WINDOW = timedelta(days=7)
"""How long an applied event's id is remembered: a redelivery within it is skipped; one after it
(a message held in a queue for over a week) reaches the handler, which is idempotent anyway."""
EXPIRIES = (Expiry(PROCESSED, "processed_at", DEDUPLICATION_WINDOW), Expiry(RETRIED, "retried_at", RETRY_RECORD_WINDOW))
ATTEMPT_HEADER = "x-taskflow-attempt"
ERROR_HEADER = "x-taskflow-error"
CARRIED_HEADERS = ("traceparent", "tracestate", "baggage")
"""The publisher's headers a retried, parked or requeued message keeps (the W3C trace context), as
text only: anything else a publisher set is dropped, since a value pika reads but cannot write back
(a double of 1e19, a timestamp past 2**63) would make every republish of the message fail."""
CARRIED_HEADER_LIMIT = 8192
"""Characters of a carried header beyond which it is dropped: W3C Baggage's limit for the whole
header (tracestate and traceparent are far shorter). A message's headers travel in one frame
(131,072 bytes by default), so a republish that added its attempt and error to headers near that
size would be refused with the connection, again at every redelivery."""
TEXT_LIMIT = 500
"""Characters of text a consumer writes into a header or a record from a message: an error, which
may quote the message (a forgery's 140 kB ``source``), its id, source and type."""
DELIVERY_COUNT_HEADER = "x-delivery-count"
"""Set by a quorum queue on a redelivery: how many times the message returned without an outcome."""

CONSUMED = Counter("events_consumed_total", "Messages a consumer finished with, by outcome.", ["queue", "type", "outcome"])
HANDLER_SECONDS = Histogram(
    "events_handler_duration_seconds",
    "Time a handler took, successful or not.",
    ["queue", "type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

Handler = Callable[[Event], None]
HANDLER_TIMEOUT = timedelta(seconds=120)
"""How long one handler run may take before its attempt counts as failed."""


@dataclass
class _Delivery:
    tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    properties: pika.BasicProperties
    body: bytes


DEAD_LETTER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")
"""Header names (or prefixes) the broker adds to a message it dead-letters (RabbitMQ, "Dead Letter
Exchanges"): no publisher can take them off."""


def record_key(queue: str, event: Event) -> str:
    """``<queue>:<source>:<id>``: what ``processed_events`` and ``retried_events`` know an event of
    ``queue`` by. The id alone is not enough: CloudEvents 1.0 makes ``source`` + ``id`` unique
    ("Producers MUST ensure that source + id is unique for each distinct event"), so an event of
    another source may carry the same id, and must not make this one look applied already."""
    return f"{queue}:{event.source}:{event.id}"


def _legacy_key(queue: str, event: Event) -> str:
    """``<queue>:<id>``: what releases before 2026-12-03 keyed ``processed_events``,
    ``retried_events`` and ``dead_letters`` by. Still read beside today's keys (with the body's
    digest to match where one is kept), so that an event applied, retried or parked before an
    upgrade is neither applied again nor parked as forged after it."""
    return f"{queue}:{event.id}"


def _record_keys(queue: str, event: Event) -> list[str]:
    """Every key a ``processed_events`` or ``retried_events`` record of ``event`` may have: today's
    (:func:`record_key`) and the previous release's (:func:`_legacy_key`)."""
    return [record_key(queue, event), _legacy_key(queue, event)]


def _returning(delivery: _Delivery, subscription: Subscription) -> bool:
    """Whether ``delivery`` came back through the subscription's own queues: its queues exchange
    (a retry or parking by the consumer, a requeue) or the default exchange (a retry queue's
    message dead-lettered back by the broker)."""
    return delivery.exchange in ("", subscription.queues_exchange)


def _may_repeat(delivery: _Delivery, event: Event, subscription: Subscription) -> bool:
    """Whether ``delivery`` may be an event this consumer applied already, so that its
    ``processed_events`` record is worth a look-up: anything but the first delivery (the broker's
    ``redelivered`` flag) of a hand-off (:data:`~.publisher.FIRST_PUBLICATION_HEADER`) from the
    events exchange while the event's time is within :data:`~.outbox.HANDOFF_WINDOW` of now,
    before which the relay does not publish it. A retry, a parked message requeued, the relay's
    publication, a second try of a publisher and anything older (a hand-off held up, or the same
    message sent again later, when a handler's own guard may have expired, such as notify's feed
    entries after a day) may each repeat one; so may an event dated further ahead (a producer's
    clock or a publisher's date, which would otherwise keep the look-up off until that time)."""
    headers = delivery.properties.headers or {}
    return (delivery.redelivered or _returning(delivery, subscription) or headers.get(FIRST_PUBLICATION_HEADER) != "1"
            or abs(datetime.now(UTC) - event.time) > HANDOFF_WINDOW)


def _untrusted_path(delivery: _Delivery, event: Event, subscription: Subscription) -> str | None:
    """Why ``event``, arriving from the events exchange, cannot be trusted to come from its type's
    owner, judged by the way it came; None when it can.

    The broker vouches for the publisher of an event only where its permissions do: each
    service's account may publish to ``taskflow.events`` only its own types' routing keys (topic
    permissions, deploy/rabbitmq/definitions.json), may not declare, delete or retype that
    exchange, and may write to no exchange of another service, the default one included. So an
    event is trusted when it came through the events exchange, routed by its own type and never
    dead-lettered there (a queue of the publisher's own, declared with the events exchange as its
    dead-letter exchange, would otherwise re-route anything under any routing key). Anything else
    (another exchange bound into the events exchange, a routing key other than the type) is a
    publisher passing its event off as someone else's. What comes back through the consumer's own
    queues is judged by :meth:`Consumer._vouched` instead.
    """
    if delivery.exchange != subscription.exchange:
        return f"came through exchange {delivery.exchange}"
    if delivery.routing_key != event.type:
        return f"routed as {delivery.routing_key}"
    headers = delivery.properties.headers or {}
    if any(name.startswith(DEAD_LETTER_HEADERS) for name in headers):
        return "dead-lettered into the events exchange"
    return None


class SubscriptionCancelled(Exception):
    """The broker cancelled the consumer's subscription (``basic.cancel``)."""


def _count(headers: dict[str, Any], name: str, default: int) -> int:
    """The non-negative integer header ``name`` of a message (pika decodes AMQP's long-long as an
    ``int`` subclass), else ``default``: any client may publish, so a header that is not a count
    (``"one"``, a table, -3, true) counts as absent rather than crash the consumer on every
    delivery of that message."""
    value = headers.get(name, default)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


BUSY_CODES = frozenset({24, 50, 112, 262})
"""MongoDB's codes of an operation the database could not do now (LockTimeout, MaxTimeMSExpired,
WriteConflict, ExceededTimeLimit), as opposed to one it refuses."""


def _database_unavailable(error: BaseException) -> bool:
    """Whether a handler's error is its database's, not the event's: unreachable, or busy (the
    codes above, an error the server labels retryable, or SQLite's "database is locked" that
    FerretDB passes on)."""
    if isinstance(error, ConnectionFailure):
        return True
    if not isinstance(error, OperationFailure):
        return False
    retryable = error.has_error_label("RetryableWriteError") or error.has_error_label("TransientTransactionError")
    return error.code in BUSY_CODES or retryable or "database is locked" in str(error)


def carried_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The :data:`CARRIED_HEADERS` of ``headers`` whose values are text of at most :data:`CARRIED_HEADER_LIMIT`."""
    return {name: value for name, value in (headers or {}).items()
            if name in CARRIED_HEADERS and isinstance(value, str) and len(value) <= CARRIED_HEADER_LIMIT}


def _digest(body: bytes) -> str:
    """The SHA-256 of a message body, in hex."""
    return hashlib.sha256(body).hexdigest()


def _storable(text: str) -> str:
    """``text`` as UTF-8 can carry it (BSON, AMQP headers), cut to :data:`TEXT_LIMIT` characters: a
    lone surrogate, which JSON's ``\\ud800`` escape decodes to, is written as its escape instead."""
    return text[:TEXT_LIMIT].encode("utf-8", "backslashreplace").decode("utf-8")


class Consumer:
    """Runs ``handlers`` for ``subscription``'s queue.

    Args:
        url: ``RABBITMQ_URL``.
        subscription: the queue, its bindings and retry policy.
        handlers: event type → handler; an event of another type is acknowledged and ignored.
        db: the consuming service's database (``processed_events``, ``dead_letters``), resolved per call.
        prefetch: unacknowledged messages the broker may send ahead.
        heartbeat_seconds: AMQP heartbeat (None: the broker's default).
        handler_timeout_seconds: how long one handler run may take (:data:`HANDLER_TIMEOUT`).
    """

    def __init__(
        self,
        url: str,
        subscription: Subscription,
        handlers: Mapping[str, Handler],
        db: Callable[[], Database],
        *,
        prefetch: int = 16,
        heartbeat_seconds: int | None = None,
        handler_timeout_seconds: float = HANDLER_TIMEOUT.total_seconds(),
    ) -> None:
        self.url = url
        self.subscription = subscription
        self.handlers = dict(handlers)
        self.db = db
        self.prefetch = prefetch
        self.heartbeat = heartbeat_seconds
        self._pending: collections.deque[_Delivery] = collections.deque()
        self._cautious_left = 0
        self.handler_timeout = handler_timeout_seconds

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, reconnecting with back-off when the broker goes away,
        and after any other error too (logged with its traceback): what was not acked is
        redelivered, and one broken message is parked after ``delivery_limit`` deliveries."""
        failures = 0
        while not stop.is_set():
            try:
                self._consume(stop)
                failures = 0
            except Exception as error:  # the consumer outlives any one failure
                self._cautious_left = self.prefetch
                failures += 1
                delay = backoff_seconds(failures, cap=10.0)
                expected = (*broker.CONNECTION_ERRORS, PyMongoError, NackError, UnroutableError, SubscriptionCancelled)
                log.log(
                    logging.WARNING if isinstance(error, expected) else logging.ERROR,
                    "consumer %s: %s: %s; reconnecting in %.1fs", self.subscription.queue, type(error).__name__, error, delay,
                    exc_info=None if isinstance(error, expected) else error,
                )
                stop.wait(delay)

    def _consume(self, stop: threading.Event) -> None:
        connection = broker.connect(self.url, heartbeat_seconds=self.heartbeat)
        try:
            ensure(connection, self.subscription)
            channel = connection.channel()
            # After a failure, one message at a time until a window's worth went through: were the
            # failure a message that breaks the connection itself (a frame pika cannot read), only
            # that message comes back again with its delivery count raised, never those around it.
            channel.basic_qos(prefetch_count=1 if self._cautious_left else self.prefetch)
            republish = connection.channel()
            republish.confirm_delivery()
            self._pending.clear()
            cancelled = threading.Event()
            channel.add_on_cancel_callback(lambda _frame: cancelled.set())
            tag = channel.basic_consume(self.subscription.queue, self._collect)
            while not stop.is_set():
                if cancelled.is_set():  # what was received and not acked returns to the queue
                    raise SubscriptionCancelled(f"the broker cancelled the subscription to {self.subscription.queue}")
                if not self._pending:
                    connection.process_data_events(time_limit=0.5)
                    continue
                self._process(connection, channel, republish, self._pending.popleft(), stop)
                if self._cautious_left:
                    self._cautious_left -= 1
                    if self._cautious_left:
                        continue
                    # Back to the whole window: on a new consumer (a prefetch change applies to new ones only).
                    channel.basic_cancel(tag)
                    channel.basic_qos(prefetch_count=self.prefetch)
                    tag = channel.basic_consume(self.subscription.queue, self._collect)
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except broker.CONNECTION_ERRORS:
                    pass

    def _collect(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        self._pending.append(_Delivery(method.delivery_tag, method.redelivered, method.exchange, method.routing_key, properties, body))

    # -- one message -------------------------------------------------------------------------

    def _process(
        self, connection: pika.BlockingConnection, channel: Any, republish: Any, delivery: _Delivery, stop: threading.Event
    ) -> None:
        """Process one delivery; while the database is unreachable, hold it and wait (see the
        module docstring). Raises the database's error only when asked to stop meanwhile."""
        failures = 0
        while True:
            try:
                self._process_once(connection, channel, republish, delivery)
                return
            except PyMongoError as error:
                failures += 1
                if not self._database_back(connection, stop, error, failures):
                    raise
            except (*broker.CONNECTION_ERRORS, NackError, UnroutableError):
                raise  # the broker's: reconnect, and what was not acked comes back
            except Exception as error:  # this message's own: park it alone, never the ones behind it
                log.exception("consumer %s: a message could not be processed", self.subscription.queue)
                self._park_unprocessable(channel, republish, delivery, f"unprocessable: {type(error).__name__}: {error}")
                CONSUMED.labels(self.subscription.queue, "unknown", "unprocessable").inc()
                return

    def _park_unprocessable(self, channel: Any, republish: Any, delivery: _Delivery, error: str) -> None:
        """Park a message our own code failed on; should parking fail the same way, reject it, and
        the broker dead-letters it to the parking queue unrecorded: either way it leaves the queue
        without a reconnect, which would return every prefetched message behind it."""
        try:
            self._park(republish, delivery, 1, error, event=None)
        except (*broker.CONNECTION_ERRORS, NackError, UnroutableError, PyMongoError):
            raise
        except Exception:
            log.exception("consumer %s: could not park a message; the broker parks it", self.subscription.queue)
            channel.basic_nack(delivery.tag, requeue=False)
            return
        channel.basic_ack(delivery.tag)

    def _database_back(
        self, connection: pika.BlockingConnection, stop: threading.Event, error: PyMongoError, failures: int
    ) -> bool:
        """After the ``failures``-th database error in a row on one message, wait (back-off,
        answering heartbeats) until the database answers a ping (True) or ``stop`` (False)."""
        log.warning(
            "consumer %s: the database failed (%s: %s); holding the message until it answers",
            self.subscription.queue, type(error).__name__, error,
        )
        while not stop.is_set():
            resume_at = time.monotonic() + backoff_seconds(failures, cap=10.0)
            while time.monotonic() < resume_at and not stop.is_set():
                connection.process_data_events(time_limit=0.5)
            try:
                self.db().command("ping")
            except PyMongoError:
                failures += 1
                continue
            log.info("consumer %s: the database answers; processing the message again", self.subscription.queue)
            return True
        return False

    def _process_once(self, connection: pika.BlockingConnection, channel: Any, republish: Any, delivery: _Delivery) -> None:
        queue = self.subscription.queue
        headers = delivery.properties.headers or {}
        attempt = min(max(_count(headers, ATTEMPT_HEADER, 1), 1), self.subscription.max_attempts)
        try:
            event = Event.decode(delivery.body)
        except MalformedEvent as error:
            self._park(republish, delivery, attempt, f"malformed: {error}", event=None)
            channel.basic_ack(delivery.tag)
            CONSUMED.labels(queue, "unknown", "malformed").inc()
            return
        handler = self.handlers.get(event.type)
        untrusted = self._untrusted(delivery, event) if handler is not None else None
        if handler is not None and (forged(event) or untrusted):
            reason = f"forged: {event.type} from {event.source}" + (f", {untrusted}" if untrusted else "")
            self._park(republish, delivery, attempt, reason, event=event)
            channel.basic_ack(delivery.tag)
            CONSUMED.labels(queue, event.type, "forged").inc()
            return
        # The broker's count of returns, trusted only on a redelivery: on a first delivery the
        # header can only be the publisher's (any client may publish, and could set it to park).
        returned = _count(headers, DELIVERY_COUNT_HEADER, 0) if delivery.redelivered else 0
        if handler is not None and returned >= self.subscription.delivery_limit:  # its last delivery
            error = f"delivered {returned + 1} times without an outcome (a consumer crashed on it)"
            self._park(republish, delivery, attempt, error, event=event, trusted=True)
            channel.basic_ack(delivery.tag)
            CONSUMED.labels(queue, event.type, "dead_lettered").inc()
            return
        if handler is None or (_may_repeat(delivery, event, self.subscription) and self._already_processed(event)):
            channel.basic_ack(delivery.tag)
            CONSUMED.labels(queue, event.type, "ignored" if handler is None else "duplicate").inc()
            return
        error = self._run_handler(connection, handler, event, delivery.properties.headers or {})
        if error is None:
            self._record_processed(event)
            channel.basic_ack(delivery.tag)
            CONSUMED.labels(queue, event.type, "applied").inc()
            return
        if attempt < self.subscription.max_attempts:
            self.db()[RETRIED].update_one(
                {"_id": record_key(self.subscription.queue, event)},
                {"$set": {"body_sha256": _digest(delivery.body), "retried_at": datetime.now(UTC)}}, upsert=True,
            )
            self._republish(republish, self.subscription.retry_queue(attempt), delivery, attempt + 1, error)
            CONSUMED.labels(queue, event.type, "retried").inc()
        else:
            self._park(republish, delivery, attempt, error, event=event, trusted=True)
            CONSUMED.labels(queue, event.type, "dead_lettered").inc()
        channel.basic_ack(delivery.tag)

    def _run_handler(
        self, connection: pika.BlockingConnection, handler: Handler, event: Event, headers: dict[str, Any]
    ) -> str | None:
        """Run ``handler`` on a thread of its own, pumping heartbeats; the error text (a timeout
        after ``handler_timeout_seconds`` included), or None. An unreachable or busy database (see
        :func:`_database_unavailable`) is raised instead.

        The processing span's parent is the publish span (AMQP headers), or else the request
        that made the event (its ``traceparent`` attribute): one trace either way.
        """
        carrier = {key: value for key, value in headers.items() if isinstance(value, str)}
        parent = propagate.extract(carrier if "traceparent" in carrier else event.trace_headers)
        started = time.perf_counter()

        outcome: list[BaseException | None] = []

        def call() -> None:
            token = otel_context.attach(parent)
            try:
                with tracer.start_as_current_span(
                    f"{self.subscription.queue} process",
                    kind=trace.SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "rabbitmq",
                        "messaging.operation.type": "process",
                        "messaging.destination.name": self.subscription.queue,
                        "messaging.message.id": event.id,
                        "cloudevents.event_type": event.type,
                    },
                ):
                    handler(event)
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 (handed to the consumer's thread, which judges it)
                outcome.append(error)
            finally:
                otel_context.detach(token)

        worker = threading.Thread(target=call, name=f"{self.subscription.queue}-handler", daemon=True)
        worker.start()
        # Wait for the handler, answering the broker's heartbeats at least every half second.
        deadline = time.monotonic() + self.handler_timeout
        while worker.is_alive() and time.monotonic() < deadline:
            worker.join(timeout=0.5)
            connection.process_data_events(time_limit=0)
        HANDLER_SECONDS.labels(self.subscription.queue, event.type).observe(time.perf_counter() - started)
        if not outcome:
            log.error("consumer %s: handler for %s %s ran over %g s; left behind", self.subscription.queue,
                      event.type, event.id, self.handler_timeout)
            return f"TimeoutError: the handler ran over {self.handler_timeout:g} s"
        error = outcome[0]
        if error is None:
            return None
        if _database_unavailable(error):
            raise error  # the database, not the event: no attempt spent
        log.warning(
            "consumer %s: handler for %s %s failed: %s", self.subscription.queue, event.type, event.id, error,
            exc_info=error,
        )
        return f"{type(error).__name__}: {error}"[:500]

    def _republish(self, channel: Any, queue: str, delivery: _Delivery, attempt: int, error: str) -> None:
        headers = {**carried_headers(delivery.properties.headers), ATTEMPT_HEADER: attempt, ERROR_HEADER: _storable(error)}
        properties = pika.BasicProperties(
            content_type=delivery.properties.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=delivery.properties.message_id,
            type=delivery.properties.type,
            timestamp=delivery.properties.timestamp,
            headers=headers,
        )
        channel.basic_publish(self.subscription.queues_exchange, queue, delivery.body, properties, mandatory=True)

    def _untrusted(self, delivery: _Delivery, event: Event) -> str | None:
        """Why ``event`` cannot be trusted to come from its type's owner; None when it can."""
        if not _returning(delivery, self.subscription):
            return _untrusted_path(delivery, event, self.subscription)
        if self._vouched(delivery, event):
            return None
        return f"came back through {delivery.exchange or 'the default exchange'} but was never sent back by this consumer"

    def _vouched(self, delivery: _Delivery, event: Event) -> bool:
        """Whether this consumer itself sent this very message (same event id, same body) to a
        retry queue, or parked it after trusting it (its handler failed every attempt, or it came
        back too often): only then is its way back through the consumer's own queues its own."""
        queue, digest = self.subscription.queue, _digest(delivery.body)
        db = self.db()
        retried = {"_id": {"$in": _record_keys(queue, event)}, "body_sha256": digest}
        parked = {"_id": {"$in": [f"{queue}:{digest}", _legacy_key(queue, event)]}, "body_sha256": digest, "trusted": True}
        return db[RETRIED].find_one(retried, {"_id": 1}) is not None or db[PARKED].find_one(parked, {"_id": 1}) is not None

    def _park(
        self, channel: Any, delivery: _Delivery, attempt: int, error: str, *, event: Event | None, trusted: bool = False
    ) -> None:
        """Record why the message is parked, then move it to the parking queue: whoever finds it
        there also finds the record (a failure in between leaves the delivery unacked, so the same
        parking is done again, and the upsert keeps one record).

        The record is keyed by the queue and the body's SHA-256, and says whether the message had
        passed the checks of its way in (``trusted``, for :meth:`_vouched`; never for a forgery, a
        message that is not an event, or one our code could not process). Once trusted, a record
        stays so: a copy of the same body arriving some other way (a ``CC`` copy) is parked as
        forged, but must not make the operator's requeue of the genuine message look forged too.
        """
        error = _storable(error)
        log.error("consumer %s: parking a message after %d attempt(s): %s", self.subscription.queue, attempt, error)
        digest = _digest(delivery.body)
        record = {
            "queue": self.subscription.queue,
            "event_id": _storable(event.id) if event is not None else None,
            "source": _storable(event.source) if event is not None else None,
            "type": _storable(event.type) if event is not None else None,
            "error": error,
            "parked_at": datetime.now(UTC),
            "body_sha256": digest,
        }
        update = {"$set": {**record, "trusted": True}} if trusted else {"$set": record, "$setOnInsert": {"trusted": False}}
        self.db()[PARKED].update_one({"_id": f"{self.subscription.queue}:{digest}"}, update, upsert=True)
        self._republish(channel, self.subscription.dead_letter_queue, delivery, attempt, error)

    # -- de-duplication ----------------------------------------------------------------------

    def _already_processed(self, event: Event) -> bool:
        return self.db()[PROCESSED].find_one({"_id": {"$in": _record_keys(self.subscription.queue, event)}}, {"_id": 1}) is not None

    def _record_processed(self, event: Event) -> None:
        try:
            self.db()[PROCESSED].insert_one(
                {"_id": record_key(self.subscription.queue, event), "type": event.type, "processed_at": datetime.now(UTC)}
            )
        except DuplicateKeyError:
            pass  # a concurrent replica applied it too; the handler is idempotent
