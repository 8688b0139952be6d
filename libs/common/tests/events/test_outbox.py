"""The outbox: no acknowledged write without its event, whatever fails (DESIGN §5, issue 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import AutoReconnect
from taskflow_common.events import broker
from taskflow_common.events import outbox as outbox_module
from taskflow_common.events.envelope import Event, new_event
from taskflow_common.events.outbox import (
    ATTEMPTS_FIELD,
    LEGACY_POINTERS,
    PENDING_FIELD,
    Dispatcher,
    Outbox,
    OutboxCollector,
    OutboxStore,
)
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.relay import Relay

from tests.support.commands import Commands
from tests.support.infra import Infra
from tests.support.processes import ROOT, wait_for

from .conftest import Background, Probe
from .helpers import effects, record_effect, write_note


def store_of(db: Database) -> OutboxStore:
    return OutboxStore(lambda: db, ["notes"])


def marked(db: Database) -> int:
    """Notes marked as holding unpublished events."""
    return db["notes"].count_documents({PENDING_FIELD: True})


@pytest.fixture
def relay_of(infra: Infra, exchange: str) -> Iterator[Callable[..., Relay]]:
    """Make relays of a database; their connections are closed when the test ends."""
    publishers: list[Publisher] = []

    def make(db: Database, **options: object) -> Relay:
        publishers.append(Publisher(infra.rabbitmq_url, exchange=exchange))
        return Relay(store_of(db), publishers[-1], poll_seconds=0.05, **options)

    yield make
    for publisher in publishers:
        publisher.close()


def test_events_are_stored_with_the_write_and_handed_off_right_after(
    db: Database, infra: Infra, exchange: str, probe: Probe
) -> None:
    store = store_of(db)
    outbox = Outbox(store, Dispatcher(store, lambda: Publisher(infra.rabbitmq_url, exchange=exchange)))
    event = write_note(outbox, db, "hi")
    wait_for(lambda: marked(db) == 0, timeout=10, what="hand-off done")
    assert [Event.decode(body).id for _, body in probe.messages()] == [event.id]
    assert db["notes"].find_one({"_id": event.subject}) == {"_id": event.subject, "text": "hi", "_outbox": []}


def test_the_dispatcher_publishes_from_memory_without_reading_the_document_back(
    db: Database, infra: Infra, exchange: str, probe: Probe
) -> None:
    commands = Commands()
    client = MongoClient(infra.mongodb_uri, tz_aware=True, event_listeners=[commands])
    try:
        watched = client[db.name]
        store = store_of(watched)
        outbox = Outbox(store, Dispatcher(store, lambda: Publisher(infra.rabbitmq_url, exchange=exchange)))
        event = write_note(outbox, watched, "hi")
        wait_for(lambda: marked(db) == 0, timeout=10, what="hand-off done")
    finally:
        client.close()
    assert [Event.decode(body).id for _, body in probe.messages()] == [event.id]
    # The write, then one conditional update emptying the published events and the marks: no
    # read of the note before its publish, and nothing else.
    assert commands.names("notes") == ["insert", "update"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # its death is the point
def test_a_dispatcher_thread_that_died_is_replaced_at_the_next_handoff(
    db: Database, infra: Infra, exchange: str, probe: Probe
) -> None:
    """Issue 18, Deliver 2: the hand-off thread serves every later write of the process; should it
    die, what it held is left to the relay and the next hand-off starts a new one."""
    threads: list[str] = []

    def publisher() -> Publisher:
        threads.append(threading.current_thread().name)
        if len(threads) == 1:
            raise RuntimeError("the first dispatcher thread dies")
        return Publisher(infra.rabbitmq_url, exchange=exchange)

    store = store_of(db)
    dispatcher = Dispatcher(store, publisher)
    outbox = Outbox(store, dispatcher)
    write_note(outbox, db, "left to the relay")
    wait_for(lambda: threads and not dispatcher._thread.is_alive(), timeout=10, what="the first thread dead")
    handed_off = write_note(outbox, db, "handed off by the new thread")
    wait_for(lambda: marked(db) == 1, timeout=10, what="the second write handed off")
    assert [Event.decode(body).id for _, body in probe.messages()] == [handed_off.id]
    assert db["notes"].count_documents({PENDING_FIELD: True, "text": "left to the relay"}) == 1
    assert len(threads) == 2


def test_an_abandoned_write_leaves_no_event(db: Database, infra: Infra, relay_of, exchange: str, probe: Probe) -> None:
    outbox = Outbox(store_of(db))
    event = new_event("note.created", service="test", subject="n1", data={})
    with pytest.raises(RuntimeError), outbox.write("notes", "n1", [event]):
        raise RuntimeError("the write did not happen (e.g. a version mismatch)")
    assert relay_of(db).run_once() == 0
    assert probe.messages() == []


def test_a_write_whose_reply_was_lost_still_has_its_event_published(
    db: Database, infra: Infra, relay_of, exchange: str, probe: Probe
) -> None:
    """The write happened but the service saw an error (the connection dropped before the
    reply): nothing is handed off, yet the events sit marked in the document, so the relay
    publishes them; no later write of the document is needed."""
    store = store_of(db)
    outbox = Outbox(store, Dispatcher(store, lambda: Publisher(infra.rabbitmq_url, exchange=exchange)), handoff_seconds=0)
    event = new_event("note.created", service="test", subject="n1", data={})
    with pytest.raises(AutoReconnect), outbox.write("notes", "n1", [event]) as pending:
        db["notes"].insert_one({"_id": "n1", **pending.insert_fields})
        raise AutoReconnect("connection reset before the reply")
    assert relay_of(db).run_once() == 1
    assert [Event.decode(body).id for _, body in probe.messages()] == [event.id]
    assert marked(db) == 0


def test_broker_down_during_a_thousand_writes_loses_nothing_and_applies_each_once(
    db: Database, infra: Infra, relay_of, exchange: str, consume, background: Background
) -> None:
    store = store_of(db)
    outbox = Outbox(store, Dispatcher(store, lambda: Publisher(infra.rabbitmq_url, exchange=exchange)), handoff_seconds=0)
    consume("note.created", handler=record_effect(db))
    infra.stop_broker()
    try:
        written = {write_note(outbox, db, f"note {i}").id for i in range(1000)}
    finally:
        infra.start_broker()
    background.start(relay_of(db).run)
    wait_for(lambda: len(effects(db)) >= 1000, timeout=600, interval=0.5, what="1000 effects")
    time.sleep(1)
    applied = effects(db)
    assert len(applied) == 1000
    assert set(applied) == written
    wait_for(lambda: marked(db) == 0, timeout=30, what="outbox drained")


def test_an_unroutable_event_stays_pending_until_someone_subscribes(
    db: Database, infra: Infra, relay_of, exchange: str, consume, background: Background
) -> None:
    relay = relay_of(db)
    event = write_note(Outbox(store_of(db), handoff_seconds=0), db, type="note.unheard")
    assert relay.run_once()
    note = db["notes"].find_one({"_id": event.subject})
    assert note[ATTEMPTS_FIELD] == 1 and note[PENDING_FIELD] is True
    assert note["_outbox"][0]["id"] == event.id
    consume("note.unheard", handler=record_effect(db))
    background.start(relay.run)
    wait_for(lambda: effects(db) == [event.id], timeout=30, what="the event delivered once a queue is bound")


def test_an_unroutable_event_does_not_hold_back_later_events_of_its_document(
    db: Database, infra: Infra, relay_of, exchange: str
) -> None:
    heard_only = Probe(infra.rabbitmq_url, f"probe.{uuid.uuid4().hex[:8]}")
    connection = broker.connect(infra.rabbitmq_url)
    connection.channel().queue_declare(heard_only.queue, durable=True, arguments={"x-queue-type": "quorum"})
    connection.channel().queue_bind(heard_only.queue, exchange, routing_key="note.heard")
    connection.close()
    unheard = new_event("note.unheard", service="test", subject="n1", data={})
    heard = new_event("note.heard", service="test", subject="n1", data={})
    with Outbox(store_of(db), handoff_seconds=0).write("notes", "n1", [unheard, heard]) as pending:
        db["notes"].insert_one({"_id": "n1", **pending.insert_fields})
    assert relay_of(db).run_once()
    assert [Event.decode(body).id for _, body in heard_only.messages()] == [heard.id]
    assert [item["id"] for item in db["notes"].find_one({"_id": "n1"})["_outbox"]] == [unheard.id]
    assert db["notes"].find_one({"_id": "n1"})[ATTEMPTS_FIELD] == 1  # the unroutable one is retried with back-off


def _crashing_relay(db: Database, infra: Infra, exchange: str, crash: str) -> int:
    """Run tests/support/crashing_relay.py; returns its exit status (-9 when it killed itself)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.crashing_relay", "--crash", crash, "--exchange", exchange,
         "--lease-seconds", "1", "--mongodb-uri", infra.mongodb_uri, "--database", db.name, "--rabbitmq-url", infra.rabbitmq_url],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return result.returncode


def test_an_unexpected_error_of_a_hand_off_leaves_its_events_to_the_relay_and_later_ones_flow(
    db: Database, infra: Infra, relay_of, exchange: str, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 §2: an error other than the broker's or the database's (a bug, an exception of a
    dependency) ended the dispatcher thread silently for the life of the process."""
    store = store_of(db)
    outbox = Outbox(store, Dispatcher(store, lambda: Publisher(infra.rabbitmq_url, exchange=exchange)), handoff_seconds=0)
    publish, failures = outbox_module.publish_stored, []

    def failing_once(*args: object, **kwargs: object) -> int:
        if not failures:
            failures.append(args)
            raise RuntimeError("not a broker or database error")
        return publish(*args, **kwargs)

    monkeypatch.setattr(outbox_module, "publish_stored", failing_once)
    first = write_note(outbox, db, "first")
    wait_for(lambda: failures != [], timeout=10, what="the failed hand-off")
    second = write_note(outbox, db, "second")
    wait_for(lambda: marked(db) == 1, timeout=10, what="the second hand-off done by the same dispatcher")
    assert relay_of(db).run_once() == 1
    assert sorted(Event.decode(body).id for _, body in probe.messages()) == sorted([first.id, second.id])


def test_an_unexpected_error_of_a_relay_round_is_logged_and_the_relay_goes_on(
    db: Database, infra: Infra, relay_of, exchange: str, probe: Probe, background: Background,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 §2: an error other than the database's escaped Relay.run, ending the worker."""
    relay = relay_of(db)
    pending, failures = relay.store.pending, []

    def failing_once(*args: object) -> object:
        if not failures:
            failures.append(args)
            raise RuntimeError("not a database error")
        return pending(*args)

    monkeypatch.setattr(relay.store, "pending", failing_once)
    event = write_note(Outbox(store_of(db), handoff_seconds=0), db)
    background.start(relay.run)
    wait_for(lambda: marked(db) == 0, timeout=30, what="the event published after the failed round")
    assert failures != [] and [Event.decode(body).id for _, body in probe.messages()] == [event.id]


def test_relay_killed_between_write_and_publish_publishes_after_restart(
    db: Database, infra: Infra, relay_of, exchange: str, consume, background: Background
) -> None:
    consume("note.created", handler=record_effect(db))
    event = write_note(Outbox(store_of(db), handoff_seconds=0), db)
    assert _crashing_relay(db, infra, exchange, "before-publish") == -signal.SIGKILL
    time.sleep(1)
    assert effects(db) == []
    background.start(relay_of(db, lease_seconds=1).run)
    wait_for(lambda: effects(db) == [event.id], timeout=30, what="the event published after restart")


def test_relay_killed_after_publish_before_marking_sent_is_applied_once(
    db: Database, infra: Infra, relay_of, exchange: str, consume, probe: Probe, background: Background
) -> None:
    consume("note.created", handler=record_effect(db))
    event = write_note(Outbox(store_of(db), handoff_seconds=0), db)
    assert _crashing_relay(db, infra, exchange, "after-publish") == -signal.SIGKILL
    assert db["notes"].find_one({"_id": event.subject})["_outbox"][0]["id"] == event.id
    background.start(relay_of(db, lease_seconds=1).run)
    wait_for(lambda: marked(db) == 0, timeout=30, what="marks cleared")
    time.sleep(1)
    assert [Event.decode(body).id for _, body in probe.messages()] == [event.id, event.id]
    assert effects(db) == [event.id]


def test_a_deleted_document_is_a_tombstone_until_its_event_is_published(
    db: Database, infra: Infra, relay_of, exchange: str, probe: Probe
) -> None:
    outbox = Outbox(store_of(db), handoff_seconds=0)
    created = write_note(outbox, db)
    deleted = new_event("note.deleted", service="test", subject=created.subject, data={})
    with outbox.write("notes", created.subject, [deleted]) as pending:
        db["notes"].update_one({"_id": created.subject}, pending.tombstone({}))
    assert db["notes"].find_one({"_id": created.subject})["_deleted"] is True
    relay = relay_of(db)
    while relay.run_once():
        pass
    assert [Event.decode(body).type for _, body in probe.messages()] == ["note.created", "note.deleted"]
    assert db["notes"].find_one({"_id": created.subject}) is None


def test_marks_left_without_events_are_cleared_by_the_relay(db: Database, infra: Infra, relay_of, exchange: str) -> None:
    """A publisher that died between pulling the last event and removing the marks."""
    db["notes"].insert_one({"_id": "n1", "_outbox": [], PENDING_FIELD: True})
    assert relay_of(db).run_once() == 1
    assert db["notes"].find_one({"_id": "n1"}) == {"_id": "n1", "_outbox": []}


def test_pointers_of_an_earlier_version_are_adopted_and_their_events_published(
    db: Database, infra: Infra, relay_of, exchange: str, probe: Probe, background: Background
) -> None:
    """Before this version each write recorded a pointer (before the write) instead of marking
    the document. During a rolling upgrade replicas of both versions write; the relay keeps
    marking what pointers name, so no event of the earlier version's writes is lost."""

    def legacy_write(note_id: str) -> Event:
        event = new_event("note.created", service="test", subject=note_id, data={})
        db["notes"].insert_one({"_id": note_id, "_outbox": [{"id": event.id, "body": event.encode().decode()}]})
        return event

    now = datetime.now(UTC)
    db[LEGACY_POINTERS].insert_many([
        {"collection": "notes", "document_id": "landed", "created_at": now},
        {"collection": "notes", "document_id": "in flight", "created_at": now},
        {"collection": "notes", "document_id": "never written", "created_at": now - timedelta(minutes=2)},
    ])
    landed = legacy_write("landed")
    relay = relay_of(db)
    assert relay.run_once() == 1
    assert [Event.decode(body).id for _, body in probe.messages()] == [landed.id]
    # young pointers stay (their write may still land, even on a document already cleared once);
    # the old one without a write goes
    assert {pointer["document_id"] for pointer in db[LEGACY_POINTERS].find()} == {"landed", "in flight"}
    in_flight = legacy_write("in flight")
    assert relay.run_once() == 1
    assert [Event.decode(body).id for _, body in probe.messages()] == [in_flight.id]
    late = new_event("note.updated", service="test", subject="landed", data={})
    db["notes"].update_one({"_id": "landed"}, {"$push": {"_outbox": {"id": late.id, "body": late.encode().decode()}}})
    assert relay.run_once() == 1  # a second write behind the young pointer, after the first was cleared
    assert [Event.decode(body).id for _, body in probe.messages()] == [late.id]
    relay.clock = lambda: now + timedelta(minutes=2)
    relay.run_once()
    assert db[LEGACY_POINTERS].count_documents({}) == 0 and marked(db) == 0


def test_the_backlog_metrics_are_read_at_most_every_refresh_interval(db: Database) -> None:
    store = store_of(db)
    reads: list[int] = []
    depth = store.depth
    store.depth = lambda: reads.append(1) or depth()  # type: ignore[method-assign]
    collector = OutboxCollector(store, refresh_seconds=3600)
    write_note(Outbox(store), db)
    assert [metric.samples[0].value for metric in collector.collect()][0] == 1
    write_note(Outbox(store), db)
    assert [metric.samples[0].value for metric in collector.collect()][0] == 1  # as read a moment ago
    assert len(reads) == 1


def test_several_relays_deliver_everything_once_to_the_consumer(
    db: Database, infra: Infra, relay_of, exchange: str, consume, background: Background
) -> None:
    consume("note.created", handler=record_effect(db))
    outbox = Outbox(store_of(db), handoff_seconds=0)
    written = {write_note(outbox, db, f"n{i}").id for i in range(200)}
    for _ in range(3):
        background.start(relay_of(db).run)
    wait_for(lambda: len(effects(db)) >= 200, timeout=300, interval=0.5, what="200 effects")
    time.sleep(1)
    assert sorted(effects(db)) == sorted(written)


def test_pending_count_and_oldest_age_are_metrics(db: Database) -> None:
    store = store_of(db)
    write_note(Outbox(store), db)
    time.sleep(0.2)
    registry = CollectorRegistry()
    registry.register(OutboxCollector(store))
    samples = {s.name: s.value for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    assert samples["outbox_pending"] == 1
    assert samples["outbox_oldest_pending_age_seconds"] >= 0.2
