"""The patched FerretDB that scripts/bootstrap builds answers as the unpatched build of the same
version does (scripts/patches/ferretdb-v1.24.2-sqlite-typed-*.patch): random documents holding
every BSON type the typed keys order, arrays and documents, under four compound indexes; random
finds (equality, $in and ranges on up to three fields, sorts on up to three fields in mixed
directions, limits; regexes on a field, in an $or and under an $and), counts, update_many and
delete_many. Counts are compared whole and with a limit. Finds must return the same documents in the same order of sort keys (documents
equal on every sort key may come in any order, as in MongoDB); a limit without a sort may pick
any of the matches, so only how many is compared.

One collection has no arrays or documents in its indexed fields (the patched build reads sorts
through its indexes), one has 5% of them (it falls back to sorting in the handler).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from bson import Int64, ObjectId, Regex
from pymongo import MongoClient, UpdateOne
from pymongo.database import Database

from tests.support.infra import mongodb_answers
from tests.support.processes import Child, free_port, wait_for

FIELDS = ("a", "b", "c")
INDEXES = ([("a", 1), ("b", 1)], [("c", 1)], [("a", 1), ("c", -1)], [("b", -1), ("a", 1), ("c", 1)])
SCALARS: list[Any] = [
    "a", "b", "B", "ab", "", "1", "0", 'q"\\<', "é", "e\u0301", "650000000000000000000001",
    ObjectId("650000000000000000000001"), ObjectId("6500000000000000000000ff"), True, False, "true", None,
    0, 1, -1, 5, Int64(5), 5.0, -0.0, 0.0, 5.5, Int64(2**53), Int64(2**53 + 1), float(2**53), -7, Int64(-7),
    2**31 - 1, Int64(2**31), float(2**31), Int64(-(2**62)), 1767225600000,
    datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 6, 1, 12, tzinfo=timezone.utc),
]
ODD: list[Any] = [[5, "a"], [0], [], ["b"], {"x": 5}, {"a": 1, "b": 2}]
ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = 400
FINDS = 150
WRITES = 30


@dataclass
class Builds:
    unpatched: Database
    patched: Database


def _serve(binary: Path, base: Path) -> tuple[Child, str]:
    port = free_port()
    for directory in ("data", "state"):
        (base / directory).mkdir(parents=True)
    child = Child([str(binary), f"--listen-addr=127.0.0.1:{port}", "--telemetry=disable", "--debug-addr=-",
                   f"--state-dir={base / 'state'}", "--log-level=warn", "--handler=sqlite",
                   f"--sqlite-url=file:{base / 'data'}/"], env=dict(os.environ), log_path=base / "ferretdb.log")
    uri = f"mongodb://127.0.0.1:{port}/"
    wait_for(lambda: mongodb_answers(uri), timeout=60, what=f"FerretDB ({binary}) answering")
    return child, uri


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    tools = Path(os.environ.get("TASKFLOW_TOOLS", ROOT / ".tools"))  # as scripts/env.sh defaults it
    base = tmp_path_factory.mktemp("differential")
    unpatched, unpatched_uri = _serve(tools / "ferretdb-unpatched" / "ferretdb", base / "unpatched")
    try:
        patched, patched_uri = _serve(tools / "bin" / "ferretdb", base / "patched")
        try:
            with MongoClient(unpatched_uri) as left, MongoClient(patched_uri) as right:
                yield Builds(left["differential"], right["differential"])
        finally:
            patched.stop()
    finally:
        unpatched.stop()


def _document(rng: random.Random, i: int, odd_share: float) -> dict[str, Any]:
    document: dict[str, Any] = {"_id": i}
    for field in FIELDS:
        if rng.random() < 0.85:
            document[field] = rng.choice(ODD) if rng.random() < odd_share else rng.choice(SCALARS)
    return document


def _condition(rng: random.Random) -> Any:
    value = rng.choice(SCALARS)
    roll = rng.random()
    if roll < 0.4:
        return value
    if roll < 0.5:
        return {"$eq": value}
    if roll < 0.65:
        return {"$in": rng.sample(SCALARS, rng.choice([1, 2, 3]))}
    operators = rng.sample(["$gt", "$gte", "$lt", "$lte"], rng.choice([1, 2]))
    same_type = [scalar for scalar in SCALARS if type(scalar) is type(value)]
    pool = same_type if rng.random() < 0.7 else SCALARS
    return {operator: rng.choice(pool) for operator in operators}


def _canonical(value: Any) -> str:
    """Equal values give equal texts: 5, Int64(5) and 5.0; 0 and -0.0; null and a missing field."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return f"number {Fraction(value)}"
    return repr(value)


def _element_order(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (2, Fraction(value), "")
    return (3, 0, value) if isinstance(value, str) else (9, 0, repr(value))


def _sort_key(document: dict[str, Any], sort: list[tuple[str, int]]) -> str:
    """MongoDB's sort key: an array sorts by its least element ascending, its greatest descending."""
    keys = []
    for field, direction in sort:
        value = document.get(field)
        if isinstance(value, list) and value:
            value = (min if direction > 0 else max)(value, key=_element_order)
        keys.append(_canonical(value))
    return repr(keys)


def _fill(database: Database, name: str, documents: list[dict[str, Any]]) -> None:
    database.drop_collection(name)
    for index in INDEXES:
        database[name].create_index(index)
    database[name].insert_many([dict(document) for document in documents])


def _find(database: Database, name: str, filter_: dict, sort: list | None, limit: int) -> tuple:
    try:
        cursor = database[name].find(filter_)
        if sort:
            cursor = cursor.sort(sort)
        found = list(cursor.limit(limit))
        counted = database[name].count_documents(filter_), database[name].count_documents(filter_, limit=limit or 3)
    except Exception as error:  # noqa: BLE001 (both builds must refuse alike)
        return ("error", type(error).__name__)
    ids = sorted(repr(document["_id"]) for document in found) if not limit else None
    keys = [_sort_key(document, sort) for document in found] if sort else None
    return ids, keys, len(found), counted


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("odd_share", [0.0, 0.05], ids=["scalars", "with arrays and documents"])
def test_finds_answer_as_the_unpatched_build(builds: Builds, seed: int, odd_share: float) -> None:
    rng = random.Random(seed)
    documents = [_document(rng, i, odd_share) for i in range(DOCUMENTS)]
    _fill(builds.unpatched, "finds", documents)
    _fill(builds.patched, "finds", documents)
    differences = []
    for _ in range(FINDS):
        filter_ = {field: _condition(rng) for field in rng.sample(FIELDS, rng.choice([0, 1, 1, 2, 2, 3]))}
        sort = None
        if rng.random() < 0.8:
            direction = rng.choice([1, -1])
            sort = [(field, direction if rng.random() < 0.85 else -direction)
                    for field in rng.sample(FIELDS, rng.choice([1, 2, 3]))]
        limit = rng.choice([0, 1, 5, 20])
        expected = _find(builds.unpatched, "finds", filter_, sort, limit)
        if _find(builds.patched, "finds", filter_, sort, limit) != expected:
            differences.append((filter_, sort, limit))
    assert differences == []


PATTERNS = ["a", "^a", "b$", "B", "^$", ".", "é", "e\u0301", "a|1", "^[a-z]+$", "q\"", "0{2}", "(", "[z-a]"]
OPTIONS = ["", "i", "m", "s", "ims", "x", "u"]
STORED_REGEXES: list[Any] = [Regex("a", "i"), Regex("^b", ""), ["ab", 5], ["B"]]
TEXTS = ["line\nab", "AB", "a\x00b", "\ufffdab", "b\x00", "\ufffd"]
"""Strings a regex treats apart: lines, case, a NUL character, U+FFFD (how invalid UTF-8 is stored)."""


def _regex(rng: random.Random) -> Any:
    pattern, options = rng.choice(PATTERNS), rng.choice(OPTIONS) if rng.random() < 0.7 else "i"
    roll = rng.random()
    if roll < 0.6:
        return {"$regex": pattern, "$options": options} if options else {"$regex": pattern}
    if roll < 0.8:
        return Regex(pattern, options)
    return {"$options": options, "$regex": pattern}


def _regex_filter(rng: random.Random) -> dict[str, Any]:
    branches = [{field: _regex(rng)} for field in rng.sample(FIELDS, rng.choice([1, 2, 3]))]
    roll = rng.random()
    if roll < 0.3:
        return branches[0]
    either = {"$or": branches}
    if roll < 0.6:
        return either
    others = {field: _condition(rng) for field in rng.sample(FIELDS, rng.choice([0, 1]))}
    extra = [{"$or": branches}] + ([{FIELDS[0]: _regex(rng)}] if rng.random() < 0.3 else [])
    return {**others, "$and": extra} if rng.random() < 0.7 else {**others, **either}


@pytest.mark.parametrize("seed", [5, 13])
@pytest.mark.parametrize("odd_share", [0.0, 0.1], ids=["scalars", "with arrays, documents and regexes"])
def test_regex_finds_answer_as_the_unpatched_build(builds: Builds, seed: int, odd_share: float) -> None:
    """The typed-regex patch evaluates regexes in SQLite: the same documents, order and counts as
    the handler's own evaluation, invalid patterns and options refused alike."""
    rng = random.Random(seed)
    documents = [_document(rng, i, 0.0) for i in range(DOCUMENTS)]
    for document in documents:
        for field in FIELDS:
            if rng.random() < odd_share:
                document[field] = rng.choice(STORED_REGEXES + ODD)
            elif rng.random() < 0.1:
                document[field] = rng.choice(TEXTS)
    _fill(builds.unpatched, "regexes", documents)
    _fill(builds.patched, "regexes", documents)
    differences = []
    for _ in range(FINDS):
        filter_ = _regex_filter(rng)
        sort = [(field, rng.choice([1, -1])) for field in rng.sample(FIELDS, rng.choice([1, 2]))] if rng.random() < 0.6 else None
        limit = rng.choice([0, 1, 5, 20])
        expected = _find(builds.unpatched, "regexes", filter_, sort, limit)
        if _find(builds.patched, "regexes", filter_, sort, limit) != expected:
            differences.append((filter_, sort, limit))
    assert differences == []


@pytest.mark.parametrize("seed", [7])
def test_writes_change_what_the_unpatched_build_changes(builds: Builds, seed: int) -> None:
    rng = random.Random(seed)
    differences = []
    for _ in range(WRITES):
        documents = [_document(rng, i, 0.05) for i in range(DOCUMENTS // 2)]
        filter_ = {field: _condition(rng) for field in rng.sample(FIELDS, rng.choice([1, 2]))}
        outcomes = []
        for database in (builds.unpatched, builds.patched):
            _fill(database, "writes", documents)
            updated = database.writes.update_many(filter_, {"$set": {"seen": True}}).modified_count
            deleted = database.writes.delete_many({**filter_, "a": {"$exists": True}}).deleted_count
            left = sorted(repr(document) for document in database.writes.find({}))
            outcomes.append((updated, deleted, left))
        if outcomes[0] != outcomes[1]:
            differences.append(filter_)
    assert differences == []


def _bulk(rng: random.Random, present: int) -> list[UpdateOne]:
    """Conditional upserts and updates by _id, none of which can hit a duplicate key: an upsert's
    filter is its _id alone (MongoDB retries those) or names an _id that is absent."""
    operations = []
    for statement in range(rng.choice([1, 5, 40])):
        key = rng.randrange(present + 20)
        roll = rng.random()
        if roll < 0.4:
            operations.append(UpdateOne({"_id": key}, {"$set": {"bulk": statement}}, upsert=True))
        elif roll < 0.7:
            operations.append(UpdateOne({"_id": key, "a": _condition(rng)}, {"$set": {"bulk": statement}}))
        else:
            operations.append(UpdateOne({"_id": present + 100 + statement, "v": {"$lt": 3}}, {"$set": {"v": 3}}, upsert=True))
    return operations


@pytest.mark.parametrize("seed", [5])
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
def test_bulk_updates_answer_as_the_unpatched_build_where_it_answers(builds: Builds, seed: int, ordered: bool) -> None:
    """Without write errors the unpatched build runs every statement; its replies then agree with
    the patched build's but for ``upserted``'s indexes (statements' indexes in MongoDB and in the
    patched build, a running count of upserts in the unpatched one), so upserted ids are compared."""
    rng = random.Random(seed)
    differences = []
    for _ in range(WRITES):
        documents = [_document(rng, i, 0.05) for i in range(DOCUMENTS // 4)]
        operations = _bulk(rng, len(documents))
        outcomes = []
        for database in (builds.unpatched, builds.patched):
            _fill(database, "bulk", documents)
            result = database.bulk.bulk_write(operations, ordered=ordered)
            left = sorted(repr(document) for document in database.bulk.find({}))
            upserted = sorted(repr(key) for key in result.upserted_ids.values())
            outcomes.append((result.matched_count, result.modified_count, result.upserted_count, upserted, left))
        if outcomes[0] != outcomes[1]:
            differences.append([repr(operation) for operation in operations])
    assert differences == []


IDS: list[Any] = ["u1", "u2", "U1", "", "é", ObjectId("650000000000000000000001"), "650000000000000000000001",
                  ObjectId("6500000000000000000000ff"), 7, 7.0, Int64(8), None, True, ["u1"], {"k": "u1"}]
"""_ids of every kind a $in may name: strings, ObjectIDs and their hex text, numbers, and what is
not pushed down (null, booleans; arrays and documents only as $in values, never stored)."""


def _id_filter(rng: random.Random, present: list[Any]) -> dict[str, Any]:
    pool = present + IDS
    values = [rng.choice(pool) for _ in range(rng.choice([0, 1, 2, 5, 30]))]
    condition: Any = {"$in": values}
    roll = rng.random()
    if roll < 0.1:
        condition = {"$in": values, "$nin": [rng.choice(pool)]}
    elif roll < 0.2:
        condition = {"$in": [Regex("^u", "i"), *values]}
    others = {field: _condition(rng) for field in rng.sample(FIELDS, rng.choice([0, 0, 1]))}
    return {"_id": condition, **others}


@pytest.mark.parametrize("seed", [3, 17])
def test_id_in_and_whole_collection_counts_answer_as_the_unpatched_build(builds: Builds, seed: int) -> None:
    """The sqlite-id-pushdown patch selects {_id: {$in: [...]}} through the _id index, and the
    row-counts patch answers count_documents({}) from a count kept by triggers: finds, counts,
    updates and deletes by a $in of ids of every kind, with writes in between, change and return
    what the unpatched build does."""
    rng = random.Random(seed)
    present: list[Any] = [f"u{i}" for i in range(150)] + [ObjectId() for _ in range(150)]
    documents = [{**_document(rng, 0, 0.05), "_id": identifier} for identifier in present]
    _fill(builds.unpatched, "ids", documents)
    _fill(builds.patched, "ids", documents)
    differences = []
    for step in range(FINDS):
        filter_ = _id_filter(rng, present)
        outcomes = []
        for database in (builds.unpatched, builds.patched):
            answer: list[Any] = [_find(database, "ids", filter_, None, 0), database.ids.count_documents({})]
            if step % 5 == 0:
                answer.append(database.ids.update_many(filter_, {"$inc": {"seen": 1}}).modified_count)
            if step % 7 == 0:
                answer.append(database.ids.delete_many(filter_).deleted_count)
                database.ids.insert_one({"_id": f"new{step}", "a": step})
            outcomes.append(answer)
        if outcomes[0] != outcomes[1]:
            differences.append((filter_, outcomes))
    assert differences == []
