"""Expired documents go: by TTL index where the engine enforces it, by the sweep on FerretDB."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from pymongo.database import Database
from taskflow_common.events import consumer
from taskflow_common.expiry import Expiry, Sweeper, enforces_ttl, expiry_indexes

NOW = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


def test_the_sweep_deletes_what_a_ttl_index_would_and_nothing_else(db: Database) -> None:
    db["sessions"].insert_many([
        {"_id": "expired", "expires_at": NOW - timedelta(hours=2, milliseconds=1)},
        {"_id": "just expired", "expires_at": NOW - timedelta(hours=2, milliseconds=1)},
        {"_id": "at the limit", "expires_at": NOW - timedelta(hours=2)},
        {"_id": "live", "expires_at": NOW},
        {"_id": "no date", "expires_at": None},
        {"_id": "no field"},
        {"_id": "not a date", "expires_at": "2020-01-01"},
        {"_id": "a number", "expires_at": 0},
    ])
    db["other"].insert_one({"_id": "kept", "expires_at": NOW - timedelta(days=400)})
    sweeper = Sweeper(lambda: db, [Expiry("sessions", "expires_at", timedelta(hours=2))], clock=lambda: NOW)
    assert sweeper.sweep() == 2
    left = {document["_id"] for document in db["sessions"].find({}, {"_id": 1})}
    assert left == {"at the limit", "live", "no date", "no field", "not a date", "a number"}
    assert db["other"].count_documents({}) == 1
    assert sweeper.sweep() == 0


def test_on_ferretdb_the_declaration_is_a_plain_index_the_sweep_can_use(db: Database) -> None:
    expiry = Expiry("sessions", "expires_at", timedelta(minutes=5))
    assert expiry.indexes(ttl=True).models[0].document["expireAfterSeconds"] == 300
    assert not enforces_ttl(db)  # the tests run on FerretDB
    (declared,) = expiry_indexes(db, [expiry])
    db[declared.collection].create_indexes(list(declared.models))
    index = db["sessions"].index_information()["expires_at_1"]
    assert index["key"] == [("expires_at", 1)] and "expireAfterSeconds" not in index


def test_the_housekeeping_loop_sweeps_until_stopped_and_outlives_a_failed_sweep(db: Database) -> None:
    db[consumer.PROCESSED].insert_many([
        {"_id": "old", "processed_at": datetime.now(UTC) - consumer.DEDUPLICATION_WINDOW - timedelta(seconds=1)},
        {"_id": "recent", "processed_at": datetime.now(UTC) - timedelta(days=1)},
    ])
    stop = threading.Event()
    calls = []

    def clock() -> datetime:  # the first sweep fails with an error that is not the database's
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the first sweep")
        return datetime.now(UTC)

    sweeper = Sweeper(lambda: db, consumer.EXPIRIES, interval_seconds=0.05, clock=clock)
    loop = threading.Thread(target=sweeper.run, args=(stop,))
    loop.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while db[consumer.PROCESSED].count_documents({"_id": "old"}) and datetime.now(UTC) < deadline:
            stop.wait(0.05)
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    assert [document["_id"] for document in db[consumer.PROCESSED].find({}, {"_id": 1})] == ["recent"]


def test_a_marked_expiry_sweeps_only_the_marked_documents(db: Database) -> None:
    """Placeholders among many documents: only those marked can expire, whatever their dates."""
    db["tasks"].insert_many([
        {"_id": "placeholder", "_placeholder": True, "made_at": NOW - timedelta(days=2)},
        {"_id": "fresh placeholder", "_placeholder": True, "made_at": NOW},
        {"_id": "task", "made_at": NOW - timedelta(days=2)},
    ])
    expiry = Expiry("tasks", "made_at", timedelta(days=1), marker="_placeholder")
    assert expiry.indexes(ttl=False).models[0].document["key"] == {"_placeholder": 1, "made_at": 1}
    assert Sweeper(lambda: db, [expiry], clock=lambda: NOW).sweep() == 1
    assert sorted(document["_id"] for document in db["tasks"].find()) == ["fresh placeholder", "task"]
