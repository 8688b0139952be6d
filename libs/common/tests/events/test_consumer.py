"""The consumer runner: no event applied twice, no poison message stops a queue (issue 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pika
import pytest
from opentelemetry import trace
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure
from taskflow_common.events import broker
from taskflow_common.events.consumer import PARKED, PROCESSED, Consumer, record_key
from taskflow_common.events.envelope import Event, new_event
from taskflow_common.events.publisher import Publisher, Unroutable
from taskflow_common.events.topology import Subscription, declare

from tests.support.commands import Commands
from tests.support.faults import failing_first
from tests.support.infra import Infra
from tests.support.processes import ROOT, Child, wait_for

from .helpers import declared, effects, note, queue_depth, record_effect


def test_each_event_is_applied_and_recorded_once(db: Database, consume, publisher: Publisher) -> None:
    consumer = consume("note.created", handler=record_effect(db))
    events = [note(f"n{i}") for i in range(20)]
    for event in events:
        publisher.publish(event)
    wait_for(lambda: len(effects(db)) == 20, timeout=30, what="20 effects")
    # The consumer records an event as processed after its handler returns: the last record may
    # follow the last effect by a moment.
    wait_for(lambda: db[PROCESSED].count_documents({}) >= 20, timeout=10, what="20 processed records")
    assert sorted(effects(db)) == sorted(event.id for event in events)
    assert db[PROCESSED].count_documents({}) == 20
    assert db[PROCESSED].find_one({"_id": record_key(consumer.subscription.queue, events[0])})["type"] == "note.created"


def test_the_same_event_delivered_twice_is_applied_once(db: Database, consume, publisher: Publisher) -> None:
    consume("note.created", handler=record_effect(db))
    event = note()
    publisher.publish(event)
    publisher.publish(event)
    follower = note("after")
    publisher.publish(follower)
    wait_for(lambda: follower.id in effects(db), timeout=30, what="the follower applied")
    assert effects(db) == [event.id, follower.id]


def test_a_hand_off_is_applied_without_a_look_up_and_a_repeat_of_it_is_skipped(
    db: Database, infra: Infra, subscription, background, publisher: Publisher
) -> None:
    """Issue 19: a hand-off's first delivery cannot repeat an applied event, so it is applied
    without reading ``processed_events``; the relay's copy of the same event (unmarked) is looked
    up, found and skipped, and so is the hand-off's own copy when the broker redelivers it."""
    commands = Commands()
    client = MongoClient(infra.mongodb_uri, tz_aware=True, event_listeners=[commands])
    try:
        consumer = Consumer(infra.rabbitmq_url, subscription("note.created"), {"note.created": record_effect(db)},
                            lambda: client[db.name])
        declared(infra.rabbitmq_url, consumer.subscription)
        background.start(consumer.run)
        handed_off, follower = note("handed off"), note("after")
        publisher.publish(handed_off, first=True)
        wait_for(lambda: db[PROCESSED].count_documents({}) == 1, timeout=30, what="the hand-off applied and recorded")
        assert commands.to(PROCESSED, "find") == []
        publisher.publish(handed_off)  # the relay's copy
        publisher.publish(follower, first=True)
        wait_for(lambda: db[PROCESSED].count_documents({}) == 2, timeout=30, what="the follower applied and recorded")
    finally:
        client.close()
    assert effects(db) == [handed_off.id, follower.id]
    [lookup] = commands.to(PROCESSED, "find")
    assert handed_off.id in str(lookup["filter"])


def test_a_poison_event_is_retried_then_parked_while_the_others_flow_and_requeued_after_a_fix(
    db: Database, infra: Infra, consume, publisher: Publisher
) -> None:
    broken = threading.Event()
    broken.set()
    attempts: list[str] = []

    def handle(event: Event) -> None:
        if event.subject == "poison":
            attempts.append(event.id)
            if broken.is_set():
                raise ValueError("cannot handle this one yet")
        db["effects"].insert_one({"event_id": event.id, "subject": event.subject})

    consumer = consume("note.created", handler=handle, retry_delays=(0.2, 0.4))
    poison = note("poison")
    publisher.publish(poison)
    healthy = [note(f"ok{i}") for i in range(5)]
    for event in healthy:
        publisher.publish(event)
    wait_for(lambda: queue_depth(infra.rabbitmq_url, consumer.subscription.dead_letter_queue) == 1, timeout=30, what="parked")
    assert sorted(effects(db)) == sorted(event.id for event in healthy)
    assert attempts == [poison.id] * 3
    parked = db[PARKED].find_one({"queue": consumer.subscription.queue, "event_id": poison.id})
    assert "cannot handle this one yet" in parked["error"]

    broken.clear()
    requeue = subprocess.run(
        [sys.executable, "-m", "taskflow_common.events.cli", "--url", infra.rabbitmq_url,
         "--queue", consumer.subscription.queue, "requeue", poison.id],
        capture_output=True, text=True, timeout=60,
    )
    assert requeue.returncode == 0, requeue.stderr
    wait_for(lambda: poison.id in effects(db), timeout=30, what="the requeued event applied")
    assert queue_depth(infra.rabbitmq_url, consumer.subscription.dead_letter_queue) == 0


def test_a_message_that_is_not_a_cloudevent_is_parked_at_once(db: Database, infra: Infra, consume) -> None:
    consumer = consume("note.created", handler=record_effect(db))
    connection = broker.connect(infra.rabbitmq_url)
    connection.channel().basic_publish("", consumer.subscription.queue, b"{not json", pika.BasicProperties(message_id="m1"))
    connection.close()
    wait_for(lambda: queue_depth(infra.rabbitmq_url, consumer.subscription.dead_letter_queue) == 1, timeout=30, what="parked")
    assert effects(db) == []


def test_a_message_with_a_malformed_attempt_header_is_handled_and_the_ones_after_it_flow(
    db: Database, infra: Infra, consume, publisher: Publisher
) -> None:
    """Any client may publish: headers that are not counts crashed the consumer (and so its
    whole worker) on every delivery, until the broker parked the good events behind it too."""
    consume("note.created", handler=record_effect(db))
    odd, after = note("odd"), note("after")
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    headers = {"x-taskflow-attempt": "one", "x-delivery-count": "many"}
    channel.basic_publish(publisher.exchange, odd.type, odd.encode(), pika.BasicProperties(message_id=odd.id, headers=headers))
    connection.close()
    publisher.publish(after)
    wait_for(lambda: sorted(effects(db)) == sorted([odd.id, after.id]), timeout=30, what="both applied")
    assert db[PARKED].count_documents({}) == 0


def test_a_delivery_count_set_by_the_publisher_parks_nothing(db: Database, infra: Infra, consume, publisher: Publisher) -> None:
    """The broker's ``x-delivery-count`` is trusted on a redelivery only: a publisher setting it
    on a first delivery made the consumer park a good event as if it had crashed consumers."""
    consume("note.created", handler=record_effect(db))
    event = note("claims many deliveries")
    connection = broker.connect(infra.rabbitmq_url)
    properties = pika.BasicProperties(message_id=event.id, headers={"x-delivery-count": 99})
    connection.channel().basic_publish(publisher.exchange, event.type, event.encode(), properties)
    connection.close()
    wait_for(lambda: effects(db) == [event.id], timeout=30, what="the event applied")
    assert db[PARKED].count_documents({}) == 0


def test_an_event_of_the_catalog_from_another_service_is_parked_not_applied(
    db: Database, infra: Infra, consume, publisher: Publisher
) -> None:
    """Any service may publish any routing key; a user.* event counts only from auth (issue 17 §8)."""
    consumer = consume("user.activated", handler=record_effect(db))
    forged = new_event("user.activated", service="tasks", subject="u1", data={})
    genuine = new_event("user.activated", service="auth", subject="u1", data={})
    publisher.publish(forged)
    publisher.publish(genuine)
    wait_for(lambda: effects(db) == [genuine.id], timeout=30, what="the genuine event applied")
    wait_for(lambda: queue_depth(infra.rabbitmq_url, consumer.subscription.dead_letter_queue) == 1, timeout=30, what="parked")
    [record] = db[PARKED].find()
    assert record["error"] == "forged: user.activated from taskflow/tasks"


def test_a_database_outage_spends_no_attempt_and_parks_nothing(
    db: Database, infra: Infra, subscription, background, publisher: Publisher, request: pytest.FixtureRequest
) -> None:
    """Issue 18, finding 1: while its database is unreachable a consumer holds its messages and
    waits; none is retried, returned to the queue, parked by it or dead-lettered by the broker."""
    down = threading.Event()
    client = MongoClient("mongodb://127.0.0.1:1/", serverSelectionTimeoutMS=200)
    request.addfinalizer(client.close)
    unreachable = client["unreachable"]
    current = lambda: unreachable if down.is_set() else db  # noqa: E731

    def handler(event: Event) -> None:
        current()["effects"].insert_one({"event_id": event.id, "subject": event.subject})

    chosen = subscription("note.created", retry_delays=(0.2, 0.4), delivery_limit=2)
    consumer = Consumer(infra.rabbitmq_url, chosen, {"note.created": handler}, current)
    declared(infra.rabbitmq_url, chosen)
    down.set()
    background.start(consumer.run)
    sent = [note(f"n{index}") for index in range(5)]
    for event in sent:
        publisher.publish(event)
    time.sleep(6)  # the old consumer spent every attempt, and every delivery, within a few seconds
    down.clear()
    wait_for(lambda: sorted(effects(db)) == sorted(event.id for event in sent), timeout=60, what="every event applied")
    assert queue_depth(infra.rabbitmq_url, chosen.dead_letter_queue) == 0
    assert db[PARKED].count_documents({}) == 0
    time.sleep(1)
    assert len(effects(db)) == len(sent)


def test_a_failing_database_under_the_consumers_own_records_spends_no_delivery(
    db: Database, infra: Infra, subscription, background, publisher: Publisher
) -> None:
    """Issue 18, finding 1: an ``OperationFailure`` of the de-duplication lookup (a busy database,
    not an unreachable one) made the consumer reconnect, each return counting as a delivery, until
    the event was parked. Now the message is held and retried: applied once, nothing parked."""
    chosen = subscription("note.created", delivery_limit=2)
    consumer = Consumer(infra.rabbitmq_url, chosen, {"note.created": record_effect(db)}, lambda: db)
    consumer._already_processed = failing_first(3, OperationFailure("database is locked"), consumer._already_processed)
    declared(infra.rabbitmq_url, chosen)
    background.start(consumer.run)
    event = note("held")
    publisher.publish(event)
    wait_for(lambda: effects(db) == [event.id], timeout=30, what="the event applied")
    assert db[PARKED].count_documents({}) == 0
    assert queue_depth(infra.rabbitmq_url, chosen.dead_letter_queue) == 0


def test_an_unexpected_error_parks_its_message_alone_and_the_consumer_goes_on(
    db: Database, infra: Infra, subscription, background, publisher: Publisher
) -> None:
    """Issue 18, Deliver 2: an error the consumer does not expect (a bug in our own code) ended its
    thread, and the queue was consumed no more. Now that message alone is parked, with its error,
    and the consumer goes on with the others."""
    chosen = subscription("note.created")
    consumer = Consumer(infra.rabbitmq_url, chosen, {"note.created": record_effect(db)}, lambda: db)
    consumer._already_processed = failing_first(1, RuntimeError("a bug"), consumer._already_processed)
    declared(infra.rabbitmq_url, chosen)
    background.start(consumer.run)
    unlucky, after = note("unlucky"), note("after")
    publisher.publish(unlucky)
    publisher.publish(after)
    wait_for(lambda: effects(db) == [after.id], timeout=30, what="the next event applied")
    [record] = db[PARKED].find()
    assert record["error"] == "unprocessable: RuntimeError: a bug"
    assert queue_depth(infra.rabbitmq_url, chosen.dead_letter_queue) == 1
    assert all(thread.is_alive() for thread in background.threads)


def test_a_message_on_its_last_delivery_is_parked_with_a_record_before_the_broker_drops_it(
    db: Database, infra: Infra, subscription, background
) -> None:
    """A message that came back ``delivery_limit`` times without an outcome would be parked by
    the broker on its next return, with no record; the consumer parks it first, recorded."""
    chosen = subscription("note.created", delivery_limit=2)
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    declare(channel, chosen)
    crashing = note("crashing")
    channel.basic_publish(chosen.exchange, "note.created", crashing.encode(), pika.BasicProperties(message_id=crashing.id))
    returned = 0
    deadline = time.monotonic() + 10
    while returned < 2 and time.monotonic() < deadline:  # two consumers that died holding it
        method, _, _ = channel.basic_get(chosen.queue, auto_ack=False)
        if method is not None:
            channel.basic_nack(method.delivery_tag, requeue=True)
            returned += 1
        time.sleep(0.05)
    connection.close()
    background.start(Consumer(infra.rabbitmq_url, chosen, {"note.created": record_effect(db)}, lambda: db).run)
    wait_for(lambda: queue_depth(infra.rabbitmq_url, chosen.dead_letter_queue) == 1, timeout=30, what="parked")
    [record] = db[PARKED].find()
    assert record["error"] == "delivered 3 times without an outcome (a consumer crashed on it)"
    assert effects(db) == []


def test_types_without_a_handler_are_acknowledged_and_ignored(
    db: Database, infra: Infra, exchange: str, subscription, background, publisher: Publisher
) -> None:
    chosen = subscription("note.#")
    consumer = Consumer(infra.rabbitmq_url, chosen, {"note.created": record_effect(db)}, lambda: db)
    declared(infra.rabbitmq_url, chosen)
    background.start(consumer.run)
    publisher.publish(note(type="note.archived"))
    created = note()
    publisher.publish(created)
    wait_for(lambda: effects(db) == [created.id], timeout=30, what="the handled type applied")
    wait_for(lambda: queue_depth(infra.rabbitmq_url, chosen.queue) == 0, timeout=10, what="queue empty")


def test_a_handler_longer_than_the_heartbeat_keeps_its_connection(db: Database, infra: Infra, consume, publisher: Publisher) -> None:
    def slow(event: Event) -> None:
        time.sleep(4)  # > 2 heartbeat intervals of 1 s: the broker would close a silent connection
        db["effects"].insert_one({"event_id": event.id})

    consumer = consume("note.created", handler=slow, heartbeat_seconds=1)
    event = note()
    publisher.publish(event)
    wait_for(lambda: effects(db) == [event.id], timeout=30, what="applied")
    time.sleep(2)
    assert effects(db) == [event.id]
    assert queue_depth(infra.rabbitmq_url, consumer.subscription.queue) == 0


def test_the_consumer_resumes_after_a_broker_restart(db: Database, infra: Infra, consume, publisher: Publisher) -> None:
    consume("note.created", handler=record_effect(db))
    before = note("before")
    publisher.publish(before)
    wait_for(lambda: effects(db) == [before.id], timeout=30, what="applied before the restart")
    infra.stop_broker()
    infra.start_broker()
    after = note("after")
    publisher.publish(after)
    wait_for(lambda: effects(db) == [before.id, after.id], timeout=60, what="applied after the restart")


def test_a_consumer_whose_queue_is_deleted_declares_it_again_and_goes_on(
    db: Database, infra: Infra, consume, publisher: Publisher
) -> None:
    """The broker answers a deleted queue with basic.cancel to its consumer (issue 18, finding 8)."""
    consumer = consume("note.created", handler=record_effect(db))
    first = note("before")
    publisher.publish(first)
    wait_for(lambda: effects(db) == [first.id], timeout=30, what="the first event applied")
    connection = broker.connect(infra.rabbitmq_url)
    connection.channel().queue_delete(consumer.subscription.queue)
    connection.close()

    second = note("after")

    def published() -> bool:  # routable once the consumer has declared its queue again and bound it
        try:
            publisher.publish(second)
            return True
        except Unroutable:
            return False

    wait_for(published, timeout=30, what="the queue declared and bound again")
    wait_for(lambda: effects(db) == [first.id, second.id], timeout=30, what="the event after the deletion applied")


def test_the_producer_trace_continues_in_the_handler(db: Database, consume, publisher: Publisher, spans) -> None:
    seen: list[trace.SpanContext] = []

    def handle(event: Event) -> None:
        seen.append(trace.get_current_span().get_span_context())

    consume("note.created", handler=handle)
    with trace.get_tracer("test").start_as_current_span("request") as request:
        event = note()
    publisher.publish(event)
    wait_for(lambda: len(seen) == 1, timeout=30, what="handled")
    finished = {span.context.span_id: span for span in spans.get_finished_spans()}
    processing = finished[seen[0].span_id]
    publishing = finished[processing.parent.span_id]
    assert processing.kind is trace.SpanKind.CONSUMER and publishing.kind is trace.SpanKind.PRODUCER
    assert publishing.parent.span_id == request.get_span_context().span_id
    assert processing.context.trace_id == publishing.context.trace_id == request.get_span_context().trace_id


def test_declaring_the_topology_again_and_concurrently_is_harmless(infra: Infra, subscription) -> None:
    chosen: Subscription = subscription("note.created")
    errors: list[BaseException] = []

    def declare_once() -> None:
        try:
            connection = broker.connect(infra.rabbitmq_url)
            declare(connection.channel(), chosen)
            connection.close()
        except BaseException as error:  # noqa: BLE001 (collected for the assertion)
            errors.append(error)

    threads = [threading.Thread(target=declare_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    declare_once()
    assert errors == []


def _consumer_process(db: Database, infra: Infra, exchange: str, queue: str, tmp_path, *options: str) -> Child:
    return Child(
        [sys.executable, "-m", "tests.support.crashing_consumer", "--queue", queue, "--binding", "note.created",
         "--exchange", exchange, "--mongodb-uri", infra.mongodb_uri, "--database", db.name,
         "--rabbitmq-url", infra.rabbitmq_url, *options],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        log_path=tmp_path / f"consumer-{time.monotonic_ns()}.log",
    )


def test_a_consumer_killed_mid_batch_does_not_apply_redelivered_events_twice(
    db: Database, infra: Infra, exchange: str, publisher: Publisher, tmp_path
) -> None:
    queue = f"test.crash.{os.getpid()}.{time.monotonic_ns()}"
    connection = broker.connect(infra.rabbitmq_url)
    declare(connection.channel(), Subscription(queue, ("note.created",), retry_delays=(0.2,), exchange=exchange))
    connection.close()
    events = [note(f"n{i}") for i in range(20)]
    for event in events:
        # Hand-offs: the 5th, applied and recorded when the consumer dies before its ack, comes
        # back marked first too, and only the broker's redelivered flag gets it looked up.
        publisher.publish(event, first=True)
    crashing = _consumer_process(db, infra, exchange, queue, tmp_path, "--crash-after", "5")
    wait_for(lambda: not crashing.running(), timeout=60, what="the consumer killed itself")
    crashing.stop()
    assert crashing.process.returncode == -signal.SIGKILL
    assert len(effects(db)) == 5
    restarted = _consumer_process(db, infra, exchange, queue, tmp_path)
    try:
        wait_for(lambda: len(effects(db)) >= 20, timeout=60, what="all applied after the restart")
        time.sleep(1)
    finally:
        restarted.stop()
    assert sorted(effects(db)) == sorted(event.id for event in events)


def test_sigterm_finishes_the_event_in_hand_then_stops(
    db: Database, infra: Infra, exchange: str, publisher: Publisher, tmp_path
) -> None:
    queue = f"test.term.{os.getpid()}.{time.monotonic_ns()}"
    connection = broker.connect(infra.rabbitmq_url)
    declare(connection.channel(), Subscription(queue, ("note.created",), retry_delays=(0.2,), exchange=exchange))
    connection.close()
    event = note()
    publisher.publish(event)
    worker = _consumer_process(db, infra, exchange, queue, tmp_path, "--handler-seconds", "3")
    wait_for(lambda: db["started"].count_documents({}) == 1, timeout=30, what="the handler started")
    os.killpg(worker.process.pid, signal.SIGTERM)
    worker.process.wait(30)
    worker.stop()
    assert worker.process.returncode == 0
    assert effects(db) == [event.id]
    assert queue_depth(infra.rabbitmq_url, queue) == 0


def test_a_handler_that_hangs_spends_one_attempt_and_holds_back_nothing(
    db: Database, infra: Infra, consume, publisher: Publisher
) -> None:
    """A handler stuck on a call that never returns (a socket without a timeout) would hold its
    queue for good: after ``handler_timeout_seconds`` the attempt counts as failed, the message
    goes to its retry queue, and the events behind it flow."""
    released = threading.Event()

    def handle(event: Event) -> None:
        if event.subject == "hang":
            released.wait(60)
            return
        db["effects"].insert_one({"event_id": event.id, "subject": event.subject})

    try:
        consumer = consume("note.created", handler=handle, retry_delays=(0.2, 0.4), handler_timeout_seconds=1)
        hang = note("hang")
        publisher.publish(hang)
        healthy = [note(f"ok{i}") for i in range(3)]
        for event in healthy:
            publisher.publish(event)
        wait_for(lambda: queue_depth(infra.rabbitmq_url, consumer.subscription.dead_letter_queue) == 1, timeout=30,
                 what="the hanging event parked after its attempts")
        assert sorted(effects(db)) == sorted(event.id for event in healthy)
        parked = db[PARKED].find_one({"queue": consumer.subscription.queue, "event_id": hang.id})
        assert parked["error"] == "TimeoutError: the handler ran over 1 s"
    finally:
        released.set()
