"""Issue 18 review (attack18): the outbox and relay. Each test documents one break (xfail)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.database import Database
from taskflow_common.events.envelope import Event, new_event
from taskflow_common.events.outbox import ATTEMPTS_FIELD, DUE_FIELD, PENDING_FIELD, SINCE_FIELD, OutboxStore, stored
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.relay import Relay

from tests.support.infra import Infra

from .conftest import Probe


@pytest.fixture
def relay_of(infra: Infra, exchange: str) -> Iterator[Callable[[Database], Relay]]:
    publishers: list[Publisher] = []

    def make(db: Database) -> Relay:
        publishers.append(Publisher(infra.rabbitmq_url, exchange=exchange))
        return Relay(OutboxStore(lambda: db, ["notes"]), publishers[-1], poll_seconds=0.05)

    yield make
    for publisher in publishers:
        publisher.close()


@pytest.mark.xfail(strict=True, reason="attack18: publish_stored stops at the first unreadable item, so every later "
                   "event of the same document (later acknowledged writes) is never published")
def test_an_unreadable_stored_event_holds_back_no_later_event_of_its_document(
    db: Database, infra: Infra, relay_of, probe: Probe
) -> None:
    """The relay reschedules a document whose ``_outbox`` holds an item it cannot read (commit
    16019eb), but ``publish_stored`` raises at that item: the events stored after it, which
    later acknowledged writes of the same entity appended, are retried with it for ever and
    never published."""
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    later = new_event("note.updated", service="test", subject="n1", data={"text": "acknowledged later"})
    db["notes"].insert_one({
        "_id": "n1", "_outbox": [{"id": "x", "body": "not an event"}, stored(later)],
        PENDING_FIELD: True, DUE_FIELD: long_ago, SINCE_FIELD: long_ago, ATTEMPTS_FIELD: 0,
    })
    relay_of(db).run_once()
    assert [Event.decode(body).id for _, body in probe.messages()] == [later.id]


@pytest.mark.xfail(strict=True, reason="attack18: events an earlier version orphaned (finding 4: pointer deleted, "
                   "events left in _outbox) carry no mark and no pointer, and nothing ever looks for them")
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
