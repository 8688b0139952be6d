"""The FerretDB that scripts/bootstrap builds applies each write command atomically, as MongoDB
applies a write to one document (scripts/patches/ferretdb-v1.24.2-write-lock.patch): of concurrent
conditional writes to one document exactly one wins, no increment is lost, and an upsert inserts
once. A bulk of updates answers as MongoDB's does when a statement fails
(scripts/patches/ferretdb-v1.24.2-writes-unordered.patch). Every test here fails on the unpatched
build (the patches' headers have the counts).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymongo import MongoClient, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from tests.support.infra import Infra

ROUNDS = 10
THREADS = 8


@pytest.fixture
def collection(infra: Infra) -> Iterator[Collection]:
    with MongoClient(infra.mongodb_uri, maxPoolSize=THREADS * 2) as client:
        database = f"writes_{uuid.uuid4().hex[:12]}"
        yield client[database]["documents"]
        client.drop_database(database)


def together(action: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """``action(i)`` on ``threads`` threads released at once; their results (or errors) in order."""
    start = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = action(i)
        except Exception as error:  # noqa: BLE001 (a refused write is a result the test reports)
            results[i] = error

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return results


def test_of_concurrent_compare_and_set_updates_exactly_one_wins(collection: Collection) -> None:
    for round_number in range(ROUNDS):
        collection.insert_one({"_id": round_number, "version": 0, "writers": 0})
        results = together(
            lambda _, key=round_number: collection.find_one_and_update(
                {"_id": key, "version": 0},
                {"$set": {"version": 1}, "$inc": {"writers": 1}},
                return_document=ReturnDocument.AFTER,
            )
        )
        assert sum(result is not None for result in results) == 1, f"round {round_number}: {results}"
        assert collection.find_one({"_id": round_number})["writers"] == 1


def test_no_concurrent_increment_is_lost(collection: Collection) -> None:
    collection.insert_one({"_id": "counter", "n": 0})
    together(lambda _: [collection.update_one({"_id": "counter"}, {"$inc": {"n": 1}}) for _ in range(50)])
    assert collection.find_one({"_id": "counter"})["n"] == THREADS * 50


def test_a_delete_and_an_update_on_the_same_condition_never_both_apply(collection: Collection) -> None:
    for round_number in range(ROUNDS * 2):
        collection.insert_one({"_id": round_number, "state": "open"})
        deleted, updated = together(
            lambda i, key=round_number: collection.delete_one({"_id": key, "state": "open"}).deleted_count
            if i == 0
            else collection.update_one({"_id": key, "state": "open"}, {"$set": {"state": "done"}}).modified_count,
            threads=2,
        )
        assert deleted + updated == 1, f"round {round_number}: deleted {deleted}, updated {updated}"


def test_concurrent_upserts_of_one_id_insert_it_once_and_count_every_one(collection: Collection) -> None:
    for round_number in range(ROUNDS):
        results = together(
            lambda _, key=round_number: collection.update_one({"_id": key}, {"$inc": {"n": 1}}, upsert=True).upserted_id
        )
        assert sum(result is not None for result in results) == 1, f"round {round_number}: {results}"
        assert collection.find_one({"_id": round_number})["n"] == THREADS


def conditional_upserts(collection: Collection) -> list[UpdateOne]:
    """Three conditional upserts; the second's _id exists at a newer version (a duplicate key)."""
    collection.insert_one({"_id": "newer", "v": 9})
    return [UpdateOne({"_id": key, "v": {"$lt": 5}}, {"$set": {"v": 5}}, upsert=True) for key in ("a", "newer", "b")]


def test_an_unordered_bulk_runs_every_statement_and_reports_the_failed_one_by_its_index(collection: Collection) -> None:
    with pytest.raises(BulkWriteError) as raised:
        collection.bulk_write(conditional_upserts(collection), ordered=False)
    reply = raised.value.details
    assert [(error["index"], error["code"]) for error in reply["writeErrors"]] == [(1, 11000)]
    assert (reply["nUpserted"], reply["nModified"]) == (2, 0)
    assert [upsert["index"] for upsert in reply["upserted"]] == [0, 2]
    assert sorted((document["_id"], document["v"]) for document in collection.find()) == [("a", 5), ("b", 5), ("newer", 9)]


def test_an_ordered_bulk_stops_at_the_failed_statement(collection: Collection) -> None:
    with pytest.raises(BulkWriteError) as raised:
        collection.bulk_write(conditional_upserts(collection), ordered=True)
    reply = raised.value.details
    assert [(error["index"], error["code"]) for error in reply["writeErrors"]] == [(1, 11000)]
    assert [upsert["index"] for upsert in reply["upserted"]] == [0]
    assert sorted(document["_id"] for document in collection.find()) == ["a", "newer"]
