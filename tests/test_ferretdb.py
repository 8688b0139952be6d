"""The FerretDB that scripts/bootstrap builds reads, updates and deletes by ``_id`` through the
table's ``_id`` index, also when the filter has conditions beside ``_id``, and still applies those
conditions (scripts/patches/ferretdb-v1.24.2-sqlite-id-*.patch); it selects by top-level fields
set equal to a string, ObjectID, boolean, date or integer, or bounded by a range, through the
(compound) index on them, and still matches as MongoDB does; a find with a sort reads an index in
order and stops at its limit, in MongoDB's order of types and values;
SQLite evaluates regexes on top-level fields, so only the rows that match reach FerretDB's
handler (scripts/patches/ferretdb-v1.24.2-sqlite-typed-*.patch; tests/test_ferretdb_differential.py
compares it with the unpatched build); each SQL statement is compiled once and kept, across schema
changes and past the number kept (ferretdb-v1.24.2-sqlite-statement-cache.patch).

FerretDB is started with debug logs, which carry every SQL statement it sends to SQLite; SQLite
itself then says how it runs each of them.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bson import Int64, ObjectId, Regex
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, OperationFailure

from tests.support.infra import mongodb_answers
from tests.support.processes import Child, free_port, wait_for

STATEMENT = re.compile(r"<<< ((?:SELECT|UPDATE|DELETE)\b[^\t]*?\"(notes[a-z_]*_[0-9a-f]{8})\"[^\t]*)\t")


@dataclass
class DebugFerretDB:
    notes: Collection
    log_path: Path
    data_dir: Path

    def statements_since(self, offset: int) -> dict[str, str]:
        """SQL that read or wrote the notes table after ``offset`` bytes of the log → its table."""
        text = self.log_path.read_bytes()[offset:].decode()
        return {match.group(1): match.group(2) for match in STATEMENT.finditer(text)}

    def plan(self, statement: str) -> str:
        """SQLite's query plan of ``statement``, e.g. ``SEARCH notes_… USING INDEX notes_…__id_ (<expr>=?)``."""
        database = sqlite3.connect(self.data_dir / "probe.sqlite")
        database.create_function("_ferretdb_regex", 3, lambda *_: 1)  # FerretDB's own (typed-regex patch)
        try:
            rows = database.execute(f"EXPLAIN QUERY PLAN {statement}", ["null"] * statement.count("?"))
            return " ".join(row[3] for row in rows)
        finally:
            database.close()


@contextmanager
def _serving(base: Path, log_level: str) -> Iterator[str]:
    """scripts/ferretdb on SQLite with its state under ``base`` and its log in ``base/ferretdb.log``; its URI."""
    port = free_port()
    env = {**os.environ, "TASKFLOW_VAR": str(base / "var"), "MONGODB_PORT": str(port),
           "FERRETDB_HANDLER": "sqlite", "FERRETDB_LOG_LEVEL": log_level}
    child = Child(["scripts/ferretdb"], env=env, log_path=base / "ferretdb.log")
    uri = f"mongodb://127.0.0.1:{port}/"
    try:
        wait_for(lambda: mongodb_answers(uri), timeout=60, what="FerretDB answering")
        yield uri
    finally:
        child.stop()


@pytest.fixture(scope="module")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebugFerretDB]:
    base = tmp_path_factory.mktemp("ferretdb")
    with _serving(base, "debug") as uri, MongoClient(uri) as client:
        notes = client["probe"]["notes"]
        notes.insert_many([{"_id": ObjectId(), "n": n} for n in range(100)])
        yield DebugFerretDB(notes, base / "ferretdb.log", base / "var" / "ferretdb" / "data")


@pytest.mark.parametrize("extra", [{}, {"n": {"$gte": 0}}], ids=["_id alone", "_id and another condition"])
def test_find_update_and_delete_by_id_use_the_id_index(ferretdb: DebugFerretDB, extra: dict) -> None:
    notes = ferretdb.notes
    target = notes.insert_one({"n": 500}).inserted_id
    offset = ferretdb.log_path.stat().st_size
    assert notes.find_one({"_id": target, **extra})["n"] == 500
    assert notes.update_one({"_id": target, **extra}, {"$set": {"n": 501}}).modified_count == 1
    assert notes.count_documents({"_id": target, **extra}) == 1
    assert notes.delete_one({"_id": target, **extra}).deleted_count == 1

    statements = ferretdb.statements_since(offset)
    assert {statement.split()[0] for statement in statements} == {"SELECT", "UPDATE", "DELETE"}, statements
    for statement, table in statements.items():
        assert f"USING INDEX {table}__id_" in ferretdb.plan(statement), statement


def test_conditions_beside_id_still_decide_what_matches(ferretdb: DebugFerretDB) -> None:
    notes = ferretdb.notes
    target = notes.insert_one({"n": 7, "version": 3}).inserted_id
    assert notes.find_one({"_id": target, "version": 2}) is None
    assert notes.update_one({"_id": target, "version": 2}, {"$set": {"n": 8}}).matched_count == 0
    assert notes.count_documents({"_id": target, "n": {"$gt": 7}}) == 0
    assert notes.delete_one({"_id": target, "version": 4}).deleted_count == 0
    assert notes.update_one({"_id": target, "version": 3}, {"$set": {"n": 8}}).matched_count == 1
    assert notes.find_one({"_id": target, "$or": [{"n": 8}, {"n": 9}]})["n"] == 8


def test_equality_on_an_indexed_field_selects_through_its_index(ferretdb: DebugFerretDB) -> None:
    notes = ferretdb.notes
    notes.create_index("owner")
    notes.insert_many([{"owner": f"owner-{i % 10}", "n": i} for i in range(200)])
    offset = ferretdb.log_path.stat().st_size
    assert notes.count_documents({"owner": "owner-3"}) == 20
    assert len(list(notes.find({"owner": {"$in": ["owner-1", "owner-2"]}}))) == 40
    assert notes.update_one({"owner": "owner-4", "n": 4}, {"$set": {"n": -4}}).modified_count == 1
    assert notes.delete_one({"owner": {"$eq": "owner-5"}, "n": 5}).deleted_count == 1

    selects = {statement: table for statement, table in ferretdb.statements_since(offset).items()
               if statement.startswith("SELECT") and "->>'owner'" in statement}
    assert {"->>'owner', '') IN (?)" in statement for statement in selects} == {True, False}, selects  # one value, two
    for statement, table in selects.items():
        assert f"USING INDEX {table}_owner_1" in ferretdb.plan(statement), statement


def test_equality_conditions_still_match_as_mongodb_does(ferretdb: DebugFerretDB) -> None:
    notes = ferretdb.notes
    object_id = ObjectId()
    escaped = 'q"<\\\u2028é'
    cases = {"plain": "a", "array": ["b", "a"], "other array": ["b"], "null": None, "number": 1, "text one": "1",
             "object id": object_id, "hex": str(object_id), "true": True, "text true": "true", "escaped": escaped}
    notes.insert_many([{"case": case, "v": value} for case, value in cases.items()])

    def matching(condition: object) -> list[str]:
        return sorted(note["case"] for note in notes.find({"v": condition}))

    assert matching("a") == ["array", "plain"]
    assert matching({"$eq": "b"}) == ["array", "other array"]
    assert matching({"$in": ["1", True]}) == ["text one", "true"]
    assert matching(object_id) == ["object id"]
    assert matching(str(object_id)) == ["hex"]
    assert matching("true") == ["text true"]
    assert matching(escaped) == ["escaped"]
    assert notes.update_many({"v": "a"}, {"$set": {"seen": True}}).modified_count == 2
    assert notes.delete_one({"v": "1"}).deleted_count == 1
    assert notes.find_one({"case": "number"})["v"] == 1


def test_equalities_on_several_fields_use_every_key_of_a_compound_index(ferretdb: DebugFerretDB) -> None:
    """Spelled as an OR of ANDs, the pushed-down condition lets SQLite seek on (owner, bucket),
    not only on owner: a big owner's bucket is read without reading the owner's other rows."""
    notes = ferretdb.notes
    notes.create_index([("owner", 1), ("bucket", 1)])
    notes.insert_many([{"owner": "big" if i % 4 else "small", "bucket": i // 10, "n": i} for i in range(400)])
    offset = ferretdb.log_path.stat().st_size
    assert sorted(note["n"] for note in notes.find({"owner": "big", "bucket": 7})) == [70, 71, 73, 74, 75, 77, 78, 79]
    selects = {statement: table for statement, table in ferretdb.statements_since(offset).items()
               if statement.startswith("SELECT") and "->>'bucket'" in statement}
    assert selects
    both_keys = "(<expr>=? AND <expr>=? AND <expr>=? AND <expr>=?)"  # each key is a type bracket and a value
    for statement, table in selects.items():
        assert f"USING INDEX {table}_owner_1_bucket_1 {both_keys}" in ferretdb.plan(statement), statement


def test_integer_equality_matches_as_mongodb_does(ferretdb: DebugFerretDB) -> None:
    """An integer equals the int32, int64 and double of its value, zero also -0.0, and arrays
    holding it; not its text. Beyond 2^53 (left to the handler) too."""
    notes = ferretdb.notes
    notes.create_index("v")
    cases = {"int": 5, "long": Int64(5), "double": 5.0, "fraction": 5.5, "text": "5", "array": [1, 5], "other": 6,
             "zero": 0, "minus zero": -0.0, "big": Int64(2**53 + 1), "big double": float(2**53), "negative": -5}
    notes.insert_many([{"case": case, "v": value} for case, value in cases.items()])

    def matching(condition: object) -> list[str]:
        return sorted(note["case"] for note in notes.find({"v": condition}))

    assert matching(5) == ["array", "double", "int", "long"]
    assert matching(5.0) == ["array", "double", "int", "long"]
    assert matching({"$in": [Int64(6), -5]}) == ["negative", "other"]
    assert matching(0) == ["minus zero", "zero"]
    assert matching(-0.0) == ["minus zero", "zero"]
    assert matching(Int64(2**53 + 1)) == ["big"]
    assert matching(Int64(2**53)) == ["big double"]
    assert matching(5.5) == ["fraction"]
    assert notes.count_documents({"v": 5, "case": "long"}) == 1


def test_a_sorted_find_reads_an_index_in_order_and_stops_at_its_limit(ferretdb: DebugFerretDB) -> None:
    """An owner's newest tasks, with another condition and a range on the way, come from the
    (owner, seq) index read in order: no sort of the owner's rows (no temporary B-tree)."""
    ordered = ferretdb.notes.database["notesorted"]
    ordered.create_index([("owner", 1), ("seq", 1)])
    ordered.insert_many([{"owner": "big" if i % 4 else "small", "seq": i, "done": i % 3 == 0} for i in range(400)])
    offset = ferretdb.log_path.stat().st_size
    assert [note["seq"] for note in ordered.find({"owner": "big"}).sort("seq", -1).limit(3)] == [399, 398, 397]
    assert [note["seq"] for note in ordered.find({"owner": "big", "done": True}).sort("seq", 1).limit(3)] == [3, 6, 9]
    assert [note["seq"] for note in ordered.find({"owner": "big", "seq": {"$gt": 200}}).sort("seq", 1).limit(2)] == [
        201, 202]
    selects = {statement: table for statement, table in ferretdb.statements_since(offset).items()
               if statement.startswith("SELECT") and "ORDER BY" in statement}
    assert len(selects) == 3, selects
    for statement, table in selects.items():
        plan = ferretdb.plan(statement)
        assert f"SEARCH {table} USING INDEX {table}_owner_1_seq_1" in plan, plan
        assert "TEMP B-TREE" not in plan, plan


def test_sorted_finds_order_types_and_values_as_mongodb_does(ferretdb: DebugFerretDB) -> None:
    """BSON order (null and missing, numbers, strings by UTF-8 bytes, ObjectIDs, booleans, dates),
    read from the index; once a row holds an array, the handler sorts it by its least element."""
    mixed = ferretdb.notes.database["notesmixed"]
    mixed.create_index("v")
    first, second = ObjectId("650000000000000000000001"), ObjectId("6500000000000000000000ff")
    expected = [None, "missing", -(2**62), -7, -0.5, 0, 5, Int64(2**53), Int64(2**53 + 1), "", "B", "a", "ab",
                'q"<', "é", first, second, False, True, datetime(2026, 1, 1), datetime(2026, 6, 1)]
    mixed.insert_many([{"rank": rank} if value == "missing" else {"rank": rank, "v": value}
                       for rank, value in reversed(list(enumerate(expected)))])

    def ranks(direction: int) -> list[int]:
        return [note["rank"] for note in mixed.find({}).sort([("v", direction), ("rank", direction)])]

    assert ranks(1) == list(range(len(expected)))
    assert ranks(-1) == list(reversed(range(len(expected))))
    mixed.insert_one({"rank": 3.5, "v": [-6, "z"]})  # by -6 ascending; by "z" descending, which is below "é"
    assert ranks(1)[3:5] == [3, 3.5]
    assert ranks(-1)[6:9] == [14, 3.5, 13]


def test_ranges_match_within_their_type_and_arrays_by_an_element(ferretdb: DebugFerretDB) -> None:
    ranged = ferretdb.notes.database["notesranged"]
    ranged.create_index("v")
    ranged.insert_many([{"case": case, "v": value} for case, value in {
        "low": 1, "high": 9, "double": 7.0, "text": "8", "date": datetime(2026, 1, 1), "array": [0, 8],
        "null": None, "true": True}.items()])

    def matching(condition: dict) -> list[str]:
        return sorted(note["case"] for note in ranged.find({"v": condition}))

    assert matching({"$gt": 5}) == ["array", "double", "high"]
    assert matching({"$gte": 1, "$lt": 7}) == ["array", "low"]
    assert matching({"$gt": "5"}) == ["text"]
    assert matching({"$lt": datetime(2027, 1, 1)}) == ["date"]
    assert matching({"$gt": False}) == ["true"]


def test_unique_typed_keys_tell_types_apart_and_equal_numbers_alike(ferretdb: DebugFerretDB) -> None:
    """An ObjectID and its hex text are two keys (the JSON text made them one); 0 and -0.0, or 5
    and 5.0, are one key, as in MongoDB."""
    unique = ferretdb.notes.database["notesunique"]
    unique.create_index("v", unique=True)
    object_id = ObjectId()
    unique.insert_many([{"v": object_id}, {"v": str(object_id)}, {"v": 0}, {"v": 5}])
    for duplicate in (-0.0, 5.0, Int64(5), object_id):
        with pytest.raises(DuplicateKeyError):
            unique.insert_one({"v": duplicate})
    assert unique.count_documents({}) == 4



def test_count_documents_is_counted_by_sqlite_while_it_can_be_exact(ferretdb: DebugFerretDB) -> None:
    """count_documents on indexed fields is one SQL count; once a row holds an array in an indexed
    field (which may match by an element), the handler counts, and still right."""
    counted = ferretdb.notes.database["notescounted"]
    counted.create_index([("owner", 1), ("due", 1)])
    counted.insert_many([{"owner": "big" if i % 4 else "small", "due": i} for i in range(400)])
    offset = ferretdb.log_path.stat().st_size
    assert counted.count_documents({"owner": "big", "due": {"$gte": 100, "$lt": 200}}) == 75
    assert counted.count_documents({"owner": {"$in": ["big", "small"]}}) == 400
    assert sum("SELECT count(*)" in statement for statement in ferretdb.statements_since(offset)) == 2
    counted.insert_one({"owner": ["big", "other"], "due": 150})
    offset = ferretdb.log_path.stat().st_size
    assert counted.count_documents({"owner": "big", "due": {"$gte": 100, "$lt": 200}}) == 76
    assert counted.count_documents({"owner": "big", "due": {"$gte": 100}, "n": 1}) == 0  # n: no index, not counted


def test_a_sort_field_the_filter_pins_still_sorts_by_its_arrays(ferretdb: DebugFerretDB) -> None:
    """{b: 5} matches [3, 5] by an element, and sorting by b puts it by its least (or greatest)
    element: a pinned sort field outside the index read in order is not dropped from the sort."""
    pinned = ferretdb.notes.database["notespinned"]
    pinned.create_index("c")
    pinned.insert_many([{"_id": 1, "b": 5, "c": 1}, {"_id": 2, "b": 5, "c": 2}, {"_id": 3, "b": [3, 5], "c": 3},
                        {"_id": 4, "b": [5, 7], "c": 4}, {"_id": 5, "b": [5, 9], "c": 1}])
    assert [note["_id"] for note in pinned.find({"b": 5}).sort([("b", 1), ("c", 1)])] == [3, 1, 5, 2, 4]
    assert [note["_id"] for note in pinned.find({"b": 5}).sort([("b", -1), ("c", 1)])] == [5, 4, 1, 2, 3]
    assert [note["_id"] for note in pinned.find({"b": 5}).sort([("c", 1), ("b", -1)])] == [5, 1, 2, 3, 4]


def test_sorted_finds_stay_whole_while_a_document_turns_into_an_array_and_back(ferretdb: DebugFerretDB) -> None:
    """The check for arrays in the index's keys is made in the statement that reads the index, so
    a concurrent change cannot make a sorted find miss documents that matched all along."""
    racing = ferretdb.notes.database["notesracing"]
    racing.create_index([("a", 1), ("b", 1)])
    racing.insert_many([{"_id": i, "a": 1, "b": i} for i in range(20)] + [{"_id": "x", "a": 2, "b": 0}])
    stop = threading.Event()

    def toggle() -> None:
        for turn in itertools.count():
            if stop.is_set():
                return
            racing.update_one({"_id": "x"}, {"$set": {"b": [1, 2] if turn % 2 == 0 else 5}})

    def read() -> list[list[Any]]:
        wrong = []
        while not stop.is_set():
            found = [note["_id"] for note in racing.find({"a": 1}).sort("b", 1)]
            if found != list(range(20)):
                wrong.append(found)
        return wrong

    with ThreadPoolExecutor(max_workers=4) as pool:
        writer = pool.submit(toggle)
        readers = [pool.submit(read) for _ in range(3)]
        time.sleep(4)
        stop.set()
        writer.result()
        assert [found for reader in readers for found in reader.result()] == []


def test_a_search_is_evaluated_by_sqlite_on_the_owners_rows_in_order(ferretdb: DebugFerretDB) -> None:
    """A task search's shape ($and of an $or of case-insensitive regexes on title and description,
    beside the owner): SQLite reads the owner's rows through (owner, seq) in order and evaluates
    the regexes itself, the count is one SQL count, and matches are MongoDB's (Unicode case
    folding, arrays by an element); an invalid pattern is refused as before."""
    searched = ferretdb.notes.database["notessearched"]
    searched.create_index([("owner", 1), ("seq", 1)])
    searched.insert_many([{"owner": "big" if i % 4 else "small", "seq": i, "title": f"Note {i}",
                           **({"description": "see note 7"} if i % 10 == 0 else {})} for i in range(400)])
    searched.insert_many([{"owner": "small", "seq": 1000, "title": "ÉTÉ note 7"},
                          {"owner": "small", "seq": 1001, "title": "nothing", "description": 7}])

    def search(text: str) -> dict[str, Any]:
        pattern = {"$regex": re.escape(text), "$options": "i"}
        return {"owner": "small", "$and": [{"$or": [{"title": pattern}, {"description": pattern}]}]}

    small = range(0, 400, 4)
    expected = [i for i in small if "note 7" in f"note {i}" or i % 10 == 0] + [1000]
    offset = ferretdb.log_path.stat().st_size
    assert [note["seq"] for note in searched.find(search("NOTE 7")).sort("seq", 1).limit(5)] == expected[:5]
    assert searched.count_documents(search("NOTE 7")) == len(expected)
    assert [note["seq"] for note in searched.find(search("été"))] == [1000]
    statements = [statement for statement in ferretdb.statements_since(offset) if "_ferretdb_regex(" in statement]
    ordered = [statement for statement in statements if "ORDER BY" in statement]
    counted = [statement for statement in statements if statement.startswith("SELECT count(*)")]
    assert len(ordered) == 1 and len(counted) == 1, statements
    table = ferretdb.statements_since(offset)[ordered[0]]
    plan = ferretdb.plan(ordered[0])
    assert f"SEARCH {table} USING INDEX {table}_owner_1_seq_1" in plan and "TEMP B-TREE" not in plan, plan
    searched.insert_one({"owner": "small", "seq": 1002, "title": ["x", "a note 7"]})
    assert searched.count_documents(search("note 7")) == len(expected) + 1
    with pytest.raises(OperationFailure, match="Regular expression is invalid"):
        searched.count_documents({"title": {"$regex": "("}})


def test_a_regex_tests_the_whole_stored_string_and_counts_stay_exact(ferretdb: DebugFerretDB) -> None:
    """Found by an attack on the typed-regex patch: a string holding a NUL character was tested
    only up to it (matches lost by find, count, update and delete), a string holding U+FFFD was
    counted as a match of any regex, and an empty $and was counted instead of refused."""
    texts = ferretdb.notes.database["notestexts"]
    texts.insert_many([{"_id": 1, "a": "a\x00b"}, {"_id": 2, "a": "\ufffd"}, {"_id": 3, "a": "x"}])
    assert [note["_id"] for note in texts.find({"a": Regex("b")})] == [1]
    assert texts.count_documents({"a": Regex("b")}) == 1
    assert texts.count_documents({"a": Regex("^a$")}) == 0
    assert texts.count_documents({"a": Regex("z")}) == 0
    assert texts.update_many({"a": {"$regex": "b$"}}, {"$set": {"seen": True}}).modified_count == 1
    with pytest.raises(OperationFailure, match="nonempty array"):
        texts.count_documents({"$and": [], "a": Regex("x")})
    assert texts.delete_many({"a": Regex("b")}).deleted_count == 1
    assert texts.estimated_document_count() == 2  # the count command, without a filter


def test_a_regex_holding_a_nul_character_is_counted_by_its_whole_pattern(ferretdb: DebugFerretDB) -> None:
    """Found by an attack on admin's user search (q=%00; a BSON regex value cannot hold NUL, a
    $regex string can): SQLite handed the pattern to the regex function cut at its NUL, so a count
    (which SQLite answers alone) counted what the pattern before the NUL matches; a find was right
    only because the handler tests each row again."""
    texts = ferretdb.notes.database["notesnul"]
    texts.insert_many([{"_id": 1, "a": "ab"}, {"_id": 2, "a": "a\x00b"}, {"_id": 3, "a": "b"}])
    for pattern, expected in {"\x00": [2], "a\x00": [2], "\x00b": [2], "a\x00c": []}.items():
        assert [text["_id"] for text in texts.find({"a": {"$regex": pattern}})] == expected
        assert texts.count_documents({"a": {"$regex": pattern}}) == len(expected), pattern
        either = {"$or": [{"a": {"$regex": pattern, "$options": "i"}}, {"b": {"$regex": pattern}}]}
        assert texts.count_documents(either) == len(expected), pattern


def test_a_page_of_ids_is_read_through_the_id_index(ferretdb: DebugFerretDB) -> None:
    """{_id: {$in: [...]}} of strings or ObjectIDs selects those rows through the _id index (a read
    model looking up a page of known ids), and the rest of the filter still decides."""
    people = ferretdb.notes.database["notespeople"]
    people.insert_many([{"_id": f"user-{n}", "n": n} for n in range(300)])
    wanted = [f"user-{n}" for n in (5, 77, 150, 299)] + ["nobody", ObjectId()]
    offset = ferretdb.log_path.stat().st_size
    assert sorted(person["n"] for person in people.find({"_id": {"$in": wanted}})) == [5, 77, 150, 299]
    assert people.count_documents({"_id": {"$in": wanted}, "n": {"$gt": 100}}) == 2
    assert people.update_many({"_id": {"$in": wanted}}, {"$set": {"seen": True}}).modified_count == 4
    assert people.delete_many({"_id": {"$in": wanted[:2]}, "seen": True}).deleted_count == 2

    statements = {statement: table for statement, table in ferretdb.statements_since(offset).items()
                  if "IN (?, ?" in statement}
    assert {statement.split()[0] for statement in statements} == {"SELECT", "DELETE"}, statements
    for statement, table in statements.items():
        assert f"USING INDEX {table}__id_" in ferretdb.plan(statement), statement
    assert sorted(person["n"] for person in people.find({"_id": {"$in": [f"user-{n}" for n in range(1100)]}})) == [
        n for n in range(300) if n not in (5, 77)]  # past the patch's 1,000 values: the handler alone, same answer


def test_a_whole_count_reads_a_row_count_that_every_write_keeps(ferretdb: DebugFerretDB) -> None:
    """count_documents({}) is read from the count the table's triggers keep: exact through inserts,
    deletes and writes from 8 threads at once, through a write FerretDB did not make (sqlite3 on the
    file, as an unpatched build would), and for a collection dropped and made anew."""
    log = ferretdb.notes.database["notesrows"]
    log.insert_many([{"n": n} for n in range(250)])
    assert log.count_documents({}) == 250

    def churn(worker: int) -> None:
        for n in range(40):
            log.insert_one({"worker": worker, "n": n})
            if n % 3 == 0:
                log.delete_one({"worker": worker, "n": n})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(churn, range(8)))
    log.delete_many({"n": {"$lt": 50}, "worker": {"$exists": False}})
    offset = ferretdb.log_path.stat().st_size
    rows = 250 - 50 + 8 * (40 - 14)
    assert log.count_documents({}) == len(list(log.find({}))) == rows
    counts = [line for line in ferretdb.log_path.read_bytes()[offset:].decode().splitlines() if "<<< SELECT" in line]
    assert len(counts) == 2 and "_ferretdb_row_counts" in counts[0] and "count(*)" not in counts[0], counts

    database = sqlite3.connect(ferretdb.data_dir / "probe.sqlite", timeout=30)
    try:
        (table,) = database.execute("SELECT table_name FROM _ferretdb_collections WHERE name = 'notesrows'").fetchone()
        with database:
            database.execute(f'DELETE FROM "{table}" WHERE rowid IN (SELECT rowid FROM "{table}" LIMIT 10)')
    finally:
        database.close()
    assert log.count_documents({}) == rows - 10

    log.drop()
    log.insert_many([{"n": n} for n in range(3)])
    assert log.count_documents({}) == 3


def test_the_first_whole_count_of_a_collection_succeeds_while_others_write_to_it(ferretdb: DebugFerretDB) -> None:
    """The first count_documents({}) of a collection makes its row-count triggers while other
    clients write: it waits for them as any write does (SQLite's busy timeout), never fails with
    "database is locked", and the count it stores is exact."""
    database = ferretdb.notes.database
    failures: list[str] = []
    for attempt in range(12):
        collection = database[f"notesfirst{attempt}"]
        collection.insert_many([{"n": n} for n in range(200)])
        writing = threading.Event()
        stop = threading.Event()
        inserted = [0] * 4

        def write(worker: int, collection: Collection = collection, writing: threading.Event = writing,
                  stop: threading.Event = stop, inserted: list[int] = inserted) -> None:
            while not stop.is_set():
                collection.insert_one({"worker": worker})
                inserted[worker] += 1
                writing.set()

        writers = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        for writer in writers:
            writer.start()
        writing.wait(10)
        try:
            collection.count_documents({})
        except OperationFailure as error:
            failures.append(str(error))
        finally:
            stop.set()
            for writer in writers:
                writer.join()
        assert collection.count_documents({}) == 200 + sum(inserted) == len(list(collection.find({}, {"_id": 1})))
    assert failures == []


def test_a_count_with_a_limit_reads_no_further_than_its_limit(ferretdb: DebugFerretDB) -> None:
    """count_documents(filter, limit=n) is one SQL count of at most n index entries (a trigram's
    postings counted to see whether it is rare), and stays exact once arrays are about."""
    limited = ferretdb.notes.database["noteslimited"]
    limited.create_index("gram")
    limited.insert_many([{"gram": "common" if n % 10 else "rare"} for n in range(3000)])
    offset = ferretdb.log_path.stat().st_size
    assert limited.count_documents({"gram": "common"}, limit=1001) == 1001
    assert limited.count_documents({"gram": "rare"}, limit=1001) == 300
    assert limited.count_documents({}, limit=10) == 10
    counts = [statement for statement in ferretdb.statements_since(offset) if "count(*)" in statement]
    assert counts and all("LIMIT ?)" in statement for statement in counts), counts
    limited.insert_one({"gram": ["rare", "common"]})
    assert limited.count_documents({"gram": "rare"}, limit=1001) == 301
    assert limited.count_documents({"gram": "rare"}, limit=100) == 100


def test_kept_statements_follow_a_collection_dropped_and_made_again(ferretdb: DebugFerretDB) -> None:
    """Each SQL statement is compiled once and kept (sqlite-statement-cache patch); a collection
    dropped and made again under its name, with other indexes, is read and written as it now is."""
    things = ferretdb.notes.database["kept"]
    for round_ in range(4):
        things.drop()
        if round_ % 2:
            things.create_index("k")
        for n in range(30):  # the same statements again and again: kept after their first use
            things.insert_one({"_id": n, "k": n % 3, "round": round_})
            things.update_one({"_id": n}, {"$inc": {"k": 10}})
            assert things.find_one({"_id": n}) == {"_id": n, "k": n % 3 + 10, "round": round_}
        assert things.count_documents({"k": 10}) == 10
        assert [thing["_id"] for thing in things.find({"k": 11}).sort("_id", -1)] == list(range(28, 0, -3))


def test_more_statements_than_are_kept_still_answer(ferretdb: DebugFerretDB) -> None:
    """Past the 256 statements kept, one is dropped for each new one; every query still answers."""
    things = ferretdb.notes.database["many"]
    things.drop()
    things.create_index("k")
    things.insert_many([{"_id": n, "k": n} for n in range(400)])
    for _ in range(2):
        for size in range(1, 301):  # a statement of its own for each length of the $in list
            assert things.count_documents({"k": {"$in": list(range(size))}}) == size


@pytest.fixture(scope="module")
def quiet_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A FerretDB of its own without debug logs, for crowds of clients."""
    with _serving(tmp_path_factory.mktemp("ferretdb-quiet"), "warn") as uri:
        yield uri


COLLECTIONS = 600
"""More collections than statements kept, so that their reads' statements keep leaving the cache."""


def _one_document_each(client: MongoClient, database: str) -> Any:
    db = client[database]
    for i in range(COLLECTIONS):
        db[f"c{i}"].insert_one({"_id": 0, "v": i})
    return db


def test_reads_never_meet_a_statement_that_left_the_cache(quiet_uri: str) -> None:
    """A statement leaving the cache is closed only once no read still holds it; closing it at once
    failed reads with "sql: statement is closed" (found by an attack on the patch)."""
    with MongoClient(quiet_uri, maxPoolSize=40) as client:
        db = _one_document_each(client, "leaving")
        errors: list[Exception] = []

        def read(seed: int) -> None:
            choose = random.Random(seed)
            for _ in range(300):
                i = choose.randrange(COLLECTIONS)
                try:
                    assert db[f"c{i}"].find_one({"v": i}) == {"_id": 0, "v": i}
                except Exception as error:  # noqa: BLE001 (every failure is the finding)
                    errors.append(error)

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(read, range(32)))
    assert errors == []


def test_more_commands_than_connections_all_finish_while_statements_leave_the_cache(quiet_uri: str) -> None:
    """150 writers, each on a collection of its own (so the write lock does not line them up), and
    60 readers: more commands at once than FerretDB's 100 SQLite connections, with statements
    leaving the cache. Closing them under the cache's mutex deadlocked the database for good."""
    writers, readers, rounds = 150, 60, 15
    with MongoClient(quiet_uri, maxPoolSize=writers + readers + 10, socketTimeoutMS=60_000) as client:
        db = _one_document_each(client, "crowd")

        def write(w: int) -> None:
            choose = random.Random(w)
            for n in range(rounds):  # batches of many sizes: INSERT texts of their own too
                db[f"c{w}"].insert_many([{"_id": f"{n}-{j}", "v": w} for j in range(choose.randrange(1, 40))])
                db[f"c{w}"].update_one({"_id": 0}, {"$inc": {"n": 1}})

        def read(seed: int) -> None:
            choose = random.Random(1000 + seed)
            for _ in range(60):
                i = choose.randrange(COLLECTIONS)
                assert db[f"c{i}"].find_one({"v": i})["v"] == i

        pool = ThreadPoolExecutor(writers + readers)
        futures = [pool.submit(write, w) for w in range(writers)] + [pool.submit(read, s) for s in range(readers)]
        done, pending = wait(futures, timeout=180)
        pool.shutdown(wait=False, cancel_futures=True)
        assert not pending, f"{len(pending)} of {len(futures)} clients still waiting after 180 s"
        assert [future.exception() for future in done if future.exception()] == []
        assert [db[f"c{w}"].find_one({"_id": 0})["n"] for w in range(writers)] == [rounds] * writers
