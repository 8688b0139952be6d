"""Hostile and broken messages against the consumer and the DLQ CLI (issue 18, found by an
attacker's review): none holds back or parks the good events around it. A service's account may
publish any message of its own types, with any headers and body (test_forgery.py: what it may not).
"""

from __future__ import annotations

import io
import struct

import pika
import pika.data
import pika.spec
import pytest
from pymongo.database import Database
from pymongo.errors import OperationFailure
from taskflow_common.events import broker, cli
from taskflow_common.events.consumer import PARKED, Consumer, Handler
from taskflow_common.events.envelope import Event
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.topology import Subscription, declare

from tests.support.infra import Infra
from tests.support.processes import wait_for

from .helpers import declared, effects, note, queue_depth, record_effect


class RawField(bytes):
    """An AMQP field value already encoded (type octet and payload): what any client can send,
    though pika itself would never encode it."""


@pytest.fixture
def raw_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let this test's pika encode :class:`RawField` header values as they are."""
    encode = pika.data.encode_value

    def encode_value(pieces: list, value: object) -> int:
        if isinstance(value, RawField):
            pieces.append(bytes(value))
            return len(value)
        return encode(pieces, value)

    monkeypatch.setattr(pika.data, "encode_value", encode_value)


FAR_TIMESTAMP = RawField(b"T" + struct.pack(">Q", 2**62))
"""A timestamp header 2**62 s after the epoch: valid AMQP 0-9-1, which RabbitMQ passes through;
pika's decoder makes a ``datetime`` of it and raises ``OSError`` (EOVERFLOW)."""


def poison_then_good(infra: Infra, publisher: Publisher, chosen: Subscription, body: bytes,
                     properties: pika.BasicProperties) -> list[Event]:
    """Declare ``chosen``, publish the poison (``body`` as is, with ``properties``) to the test's
    exchange, then three good events; returns the good ones."""
    declared(infra.rabbitmq_url, chosen)
    connection = broker.connect(infra.rabbitmq_url)
    connection.channel().basic_publish(publisher.exchange, "note.created", body, properties)
    connection.close()
    good = [note(f"good{index}") for index in range(3)]
    for event in good:
        publisher.publish(event)
    return good


def consumed_until_settled(
    infra: Infra, db: Database, chosen: Subscription, background, handler: Handler | None = None  # noqa: ANN001
) -> None:
    """Run a consumer of ``chosen`` until its four messages are applied or parked."""
    handlers = {"note.created": handler or record_effect(db)}
    background.start(Consumer(infra.rabbitmq_url, chosen, handlers, lambda: db).run)
    settled = lambda: len(effects(db)) + queue_depth(infra.rabbitmq_url, chosen.dead_letter_queue) >= 4  # noqa: E731
    wait_for(settled, timeout=90, what="every message applied or parked")


def test_a_header_out_of_datetimes_range_is_read_and_its_event_applied(
    db: Database, infra: Infra, subscription, background, publisher: Publisher, raw_fields: None
) -> None:
    """Any service account may publish any message. A timestamp header pika decoded as a
    ``datetime`` (:data:`FAR_TIMESTAMP`) raised inside frame decoding, ended the consumer's
    connection on every delivery, and the good events prefetched behind it came back each time
    with their delivery count raised until they were parked. It is read as its integer now."""
    chosen = subscription("note.created", delivery_limit=2)
    odd = note("odd header")
    good = poison_then_good(infra, publisher, chosen, odd.encode(),
                            pika.BasicProperties(message_id=odd.id, headers={"x-hostile": FAR_TIMESTAMP}))
    consumed_until_settled(infra, db, chosen, background)
    assert sorted(effects(db)) == sorted(event.id for event in [odd, *good])
    assert db[PARKED].count_documents({}) == 0
    assert queue_depth(infra.rabbitmq_url, chosen.dead_letter_queue) == 0


BREAKS_THE_CONNECTION = b"x-frame-pika-cannot-read"


@pytest.fixture
def unreadable_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process's pika fail to read the properties of a message carrying the header
    :data:`BREAKS_THE_CONNECTION`, as it does on a frame it cannot decode: the connection ends."""
    decode = pika.spec.BasicProperties.decode

    def decode_or_fail(self: pika.spec.BasicProperties, encoded: bytes, offset: int = 0) -> int:
        if BREAKS_THE_CONNECTION in bytes(encoded):
            raise OSError("a frame pika cannot read")
        return decode(self, encoded, offset)

    monkeypatch.setattr(pika.spec.BasicProperties, "decode", decode_or_fail)


def test_a_message_that_breaks_the_connection_comes_back_alone_and_parks_no_good_event(
    db: Database, infra: Infra, subscription, background, publisher: Publisher, unreadable_frames: None
) -> None:
    """After a reconnect the consumer takes one message at a time until one is done: the message
    that keeps breaking the connection is the only one returned again and again (the broker parks
    it after ``delivery_limit`` returns); the good events behind it are applied once each."""
    chosen = subscription("note.created", delivery_limit=2)
    poison = note("poison")
    good = poison_then_good(infra, publisher, chosen, poison.encode(),
                            pika.BasicProperties(message_id=poison.id, headers={BREAKS_THE_CONNECTION.decode(): 1}))
    consumed_until_settled(infra, db, chosen, background)
    assert sorted(effects(db)) == sorted(event.id for event in good)
    assert db[PARKED].count_documents({}) == 0
    assert queue_depth(infra.rabbitmq_url, chosen.dead_letter_queue) == 1  # the poison, by the broker


def test_the_dlq_cli_lists_every_parked_message_whatever_its_headers(
    infra: Infra, subscription, raw_fields: None
) -> None:
    """The broker parks the undecodable message of the test above on its own (``delivery_limit``);
    the CLI fetches it with pika too and crashes, so an operator sees none of the parked messages
    that follow it either, and ``requeue --all`` requeues nothing."""
    chosen = subscription("note.created")
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    declare(channel, chosen)
    poison, parked = note("poison"), note("parked good")
    channel.basic_publish("", chosen.dead_letter_queue, poison.encode(),
                          pika.BasicProperties(message_id=poison.id, headers={"x-hostile": FAR_TIMESTAMP}))
    channel.basic_publish("", chosen.dead_letter_queue, parked.encode(), pika.BasicProperties(message_id=parked.id))
    connection.close()
    out = io.StringIO()
    status = cli.run(cli.parser().parse_args(["--url", infra.rabbitmq_url, "--queue", chosen.queue, "list"]), out)
    assert status == 0
    assert parked.id in out.getvalue()


def test_an_attempt_header_of_zero_parks_no_good_event(
    db: Database, infra: Infra, subscription, background, publisher: Publisher
) -> None:
    """``_count`` accepts any non-negative attempt, so a publisher's ``x-taskflow-attempt: 0`` on
    an event its handler rejects (a missing field: any client can publish one) makes the consumer
    republish to ``retry_queue(0)``; ``mandatory`` raises ``UnroutableError``, which escapes
    ``_process``, and every reconnect returns the whole prefetch window, each message counted."""
    chosen = subscription("note.created", delivery_limit=2)

    def handler(event: Event) -> None:
        if event.subject == "poison":
            raise KeyError("title")
        record_effect(db)(event)

    poison = note("poison")
    good = poison_then_good(infra, publisher, chosen, poison.encode(),
                            pika.BasicProperties(message_id=poison.id, headers={"x-taskflow-attempt": 0}))
    consumed_until_settled(infra, db, chosen, background, handler)
    parked = [record["error"] for record in db[PARKED].find()]
    assert sorted(effects(db)) == sorted(event.id for event in good), parked


def test_an_event_id_the_database_cannot_store_parks_no_good_event(
    db: Database, infra: Infra, subscription, background, publisher: Publisher
) -> None:
    """JSON's ``\\ud800`` escape decodes to a lone surrogate, which pymongo refuses to encode
    (``UnicodeEncodeError``) in the de-duplication lookup and again in the parking record: the
    message is never parked by the consumer, each reconnect returns the whole prefetch window."""
    chosen = subscription("note.created", delivery_limit=2)
    body = note("poison").encode().replace(b'"id": "', b'"id": "\\ud800', 1)
    assert "\ud800" in Event.decode(body).id
    good = poison_then_good(infra, publisher, chosen, body, pika.BasicProperties(message_id="poison"))
    consumed_until_settled(infra, db, chosen, background)
    assert sorted(effects(db)) == sorted(event.id for event in good)


def test_the_dlq_cli_shows_a_parked_message_that_is_not_json(infra: Infra, subscription) -> None:
    chosen = subscription("note.created")
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    declare(channel, chosen)
    channel.basic_publish("", chosen.dead_letter_queue, b"{not json", pika.BasicProperties(message_id="m1"))
    connection.close()
    out = io.StringIO()
    status = cli.run(cli.parser().parse_args(["--url", infra.rabbitmq_url, "--queue", chosen.queue, "show", "m1"]), out)
    assert status == 0 and "not json" in out.getvalue()


def test_a_busy_database_under_the_handler_parks_nothing(
    db: Database, infra: Infra, consume, publisher: Publisher
) -> None:
    """Deliver 1: "only a handler's own failure counts as an attempt". The consumer holds the
    message for any ``PyMongoError`` of its own records, but for the handler's only for a
    ``ConnectionFailure``; the same ``OperationFailure("database is locked")`` the consumer's
    tests call "a failing database" spends an attempt when the handler's write meets it."""
    failures = iter(range(3))

    def handler(event: Event) -> None:
        if next(failures, None) is not None:
            raise OperationFailure("database is locked")
        db["effects"].insert_one({"event_id": event.id, "subject": event.subject})

    consumer = consume("note.created", handler=handler)
    event = note("busy")
    publisher.publish(event)
    settled = lambda: effects(db) or queue_depth(infra.rabbitmq_url, consumer.subscription.dead_letter_queue)
    wait_for(settled, timeout=30, what="applied or parked")
    assert effects(db) == [event.id] and db[PARKED].count_documents({}) == 0
