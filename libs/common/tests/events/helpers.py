"""A tiny event-producing "service" for the backbone's tests: notes with events in an outbox."""

from __future__ import annotations

import uuid

from pymongo.database import Database
from taskflow_common.events import broker
from taskflow_common.events.envelope import Event, new_event
from taskflow_common.events.outbox import Outbox
from taskflow_common.events.topology import Subscription, declare


def write_note(outbox: Outbox, db: Database, text: str = "hello", *, type: str = "note.created") -> Event:
    """Insert a note into ``db`` with its event through the outbox; returns the event."""
    note_id = uuid.uuid4().hex
    event = new_event(type, service="test", subject=note_id, data={"text": text})
    with outbox.write("notes", note_id, [event]) as pending:
        db["notes"].insert_one({"_id": note_id, "text": text, **pending.insert_fields})
    return event


def record_effect(db: Database):  # noqa: ANN201 (a handler)
    """A handler whose effect is deliberately not idempotent: one effect row per run."""

    def handle(event: Event) -> None:
        db["effects"].insert_one({"event_id": event.id, "subject": event.subject})

    return handle


def effects(db: Database) -> list[str]:
    """Event ids of every effect applied, one entry per application."""
    return [row["event_id"] for row in db["effects"].find({}, {"event_id": 1})]


def queue_depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` on the broker at ``url``."""
    connection = broker.connect(url)
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def note(subject: str = "n", type: str = "note.created") -> Event:
    """A test event about ``subject``."""
    return new_event(type, service="test", subject=subject, data={})


def declared(url: str, subscription: Subscription) -> Subscription:
    """``subscription`` with its queues declared on the broker at ``url``."""
    connection = broker.connect(url)
    try:
        declare(connection.channel(), subscription)
    finally:
        connection.close()
    return subscription
