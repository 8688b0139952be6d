"""The outbox and relay against what an attacker's review of issue 18 found: an unreadable stored
item holds back no later event of its document, and events an earlier version left unmarked are
published."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.database import Database
from taskflow_common.events.envelope import Event, new_event
from taskflow_common.events.outbox import (
    ATTEMPTS_FIELD,
    DUE_FIELD,
    PENDING_FIELD,
    SINCE_FIELD,
    Outbox,
    OutboxStore,
    stored,
)
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.relay import Relay

from tests.support.infra import Infra

from .conftest import Probe
from .helpers import write_note


@pytest.fixture
def relay_of(infra: Infra, exchange: str) -> Iterator[Callable[[Database], Relay]]:
    publishers: list[Publisher] = []

    def make(db: Database) -> Relay:
        publishers.append(Publisher(infra.rabbitmq_url, exchange=exchange))
        return Relay(OutboxStore(lambda: db, ["notes"]), publishers[-1], poll_seconds=0.05)

    yield make
    for publisher in publishers:
        publisher.close()


def test_an_unreadable_stored_item_holds_back_no_event_of_its_document_or_of_others(
    db: Database, infra: Infra, relay_of, probe: Probe
) -> None:
    """An item of ``_outbox`` that is not an event (a hand edit, a bug) failed the relay's whole
    round, first every time (the most overdue), so no document after it was published; then it
    held back the events stored after it in its own document. It is dropped (logged), the rest
    published."""
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    later = new_event("note.updated", service="test", subject="n1", data={"text": "acknowledged later"})
    db["notes"].insert_one({
        "_id": "n1", "_outbox": [{"id": "x", "body": "not an event"}, stored(later)],
        PENDING_FIELD: True, DUE_FIELD: long_ago, SINCE_FIELD: long_ago, ATTEMPTS_FIELD: 0,
    })
    other = write_note(Outbox(OutboxStore(lambda: db, ["notes"]), handoff_seconds=0), db)
    assert relay_of(db).run_once() == 2
    assert sorted(Event.decode(body).id for _, body in probe.messages()) == sorted([later.id, other.id])
    assert db["notes"].count_documents({PENDING_FIELD: True}) == 0
    assert db["notes"].find_one({"_id": "n1"})["_outbox"] == []


def test_events_an_earlier_version_orphaned_are_published(db: Database, infra: Infra, relay_of, probe: Probe) -> None:
    """Deliver 4: "documents still holding outbox items with no pointer are found (indexed) and
    published by the relay". The marks make new writes safe, but a document the earlier version
    left with ``_outbox`` items and no pointer (its write reported failed, then applied) is
    neither marked nor pointed to: an upgraded system never publishes those events."""
    orphaned = new_event("note.created", service="test", subject="n2", data={"text": "applied, reported failed"})
    db["notes"].insert_one({"_id": "n2", "text": "applied, reported failed", "_outbox": [stored(orphaned)]})
    relay = relay_of(db)
    relay.run_once()
    assert [Event.decode(body).id for _, body in probe.messages()] == [orphaned.id]
