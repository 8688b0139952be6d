"""The FerretDB that scripts/bootstrap builds finds, updates and deletes a document by ``_id``
through the table's ``_id`` index, not by reading the whole table
(scripts/patches/ferretdb-v1.24.2-sqlite-id-index.patch).

FerretDB is started with debug logs, which carry every SQL statement it sends to SQLite; SQLite
itself then says, for each statement that selects by ``_id``, how it would run it.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from bson import ObjectId
from pymongo import MongoClient

from tests.support.infra import mongodb_answers
from tests.support.processes import Child, free_port, wait_for

BY_ID = re.compile(r"<<< ((?:SELECT|UPDATE|DELETE)\b[^\t]*\"(notes_[0-9a-f]+)\"[^\t]*WHERE _ferretdb_sjson->[^\t]*)\t")


def test_find_update_and_delete_by_id_use_the_id_index(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TASKFLOW_VAR": str(tmp_path / "var"), "MONGODB_PORT": str(port),
           "FERRETDB_HANDLER": "sqlite", "FERRETDB_LOG_LEVEL": "debug"}
    log_path = tmp_path / "ferretdb.log"
    ferretdb = Child(["scripts/ferretdb"], env=env, log_path=log_path)
    uri = f"mongodb://127.0.0.1:{port}/"
    try:
        wait_for(lambda: mongodb_answers(uri), timeout=60, what="FerretDB answering")
        with MongoClient(uri) as client:
            notes = client["probe"]["notes"]
            ids = notes.insert_many([{"_id": ObjectId(), "n": n} for n in range(100)]).inserted_ids
            assert notes.find_one({"_id": ids[-1]})["n"] == 99
            assert notes.update_one({"_id": ids[-1]}, {"$set": {"n": -1}}).modified_count == 1
            assert notes.delete_one({"_id": ids[-1]}).deleted_count == 1
    finally:
        ferretdb.stop()

    statements = {match.group(1): match.group(2) for match in BY_ID.finditer(log_path.read_text())}
    assert {statement.split()[0] for statement in statements} == {"SELECT", "UPDATE", "DELETE"}, statements
    database = sqlite3.connect(tmp_path / "var" / "ferretdb" / "data" / "probe.sqlite")
    try:
        for statement, table in statements.items():
            plan = " ".join(row[3] for row in database.execute(f"EXPLAIN QUERY PLAN {statement}",
                                                                ["null"] * statement.count("?")))
            assert f"USING INDEX {table}__id_" in plan, (statement, plan)
    finally:
        database.close()
