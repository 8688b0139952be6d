"""Leases serialize the writers of a rule spanning documents; a dead holder's lease expires."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.database import Database
from taskflow_common.locks import COLLECTION, DocumentLocks, LockTimeout


def increment_concurrently(db: Database, locks: DocumentLocks, threads: int = 4, rounds: int = 25) -> int:
    """Read-modify-write one counter from several threads; return its final value."""
    db["counters"].insert_one({"_id": "c", "n": 0})
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(rounds):
            with locks.hold("counters:c"):
                db["counters"].update_one({"_id": "c"}, {"$inc": {"n": 1}})

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return db["counters"].find_one({"_id": "c"})["n"]


def test_with_the_lock_no_increment_is_lost(db: Database) -> None:
    assert increment_concurrently(db, DocumentLocks(lambda: db)) == 100


def test_the_lock_is_released_after_the_block_even_on_error(db: Database) -> None:
    locks = DocumentLocks(lambda: db, wait_seconds=0.2)
    with pytest.raises(RuntimeError), locks.hold("k"):
        raise RuntimeError("boom")
    with locks.hold("k"):
        assert db[COLLECTION].count_documents({"_id": "k"}) == 1
    assert db[COLLECTION].count_documents({}) == 0


def test_a_busy_key_times_out_with_503(db: Database) -> None:
    locks = DocumentLocks(lambda: db, wait_seconds=0.2)
    with locks.hold("busy"):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as raised, locks.hold("busy"):
            pass
    assert raised.value.status == 503
    assert time.monotonic() - started >= 0.2


def test_the_lease_of_a_dead_holder_expires(db: Database) -> None:
    db[COLLECTION].insert_one({"_id": "orphan", "owner": "crashed", "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    with DocumentLocks(lambda: db, wait_seconds=1).hold("orphan"):
        assert db[COLLECTION].find_one({"_id": "orphan"})["owner"] != "crashed"
