"""scripts/backup and scripts/restore (taskflow_common.backup) against the session's real FerretDB:
what is restored is what was dumped, byte for byte, with its indexes; a restore never writes over data."""

from __future__ import annotations

import gzip
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient

from tests.support.infra import Infra
from tests.support.processes import ROOT

RAW = CodecOptions(document_class=RawBSONDocument)


@pytest.fixture
def prefix(infra: Infra) -> Iterator[str]:
    """A database-name prefix of this test's own; its databases are dropped afterwards."""
    name = f"dump{uuid.uuid4().hex[:8]}_"
    yield name
    client = MongoClient(infra.mongodb_uri)
    for database in client.list_database_names():
        if database.startswith(name):
            client.drop_database(database)
    client.close()


@pytest.fixture
def client(infra: Infra) -> Iterator[MongoClient]:
    connection = MongoClient(infra.mongodb_uri)
    yield connection
    connection.close()


def fill(client: MongoClient, prefix: str) -> None:
    """Two databases of several collections, documents of many BSON types, and secondary indexes."""
    tasks = client[f"{prefix}tasks"]
    tasks["tasks"].create_indexes([
        IndexModel([("owner_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("owner_id", ASCENDING), ("title", ASCENDING)], name="by_title"),
    ])
    tasks["tasks"].insert_many([
        {
            "_id": ObjectId(),
            "owner_id": str(uuid.uuid4()),
            "title": f"task {i} é ✓",
            "created_at": datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=i),
            "due_date": None if i % 2 else datetime(2026, 12, 24, tzinfo=UTC),
            "tags": ["a", "b"][: i % 3],
            "version": i,
            "ratio": i / 7,
            "big": 2**40 + i,
            "nested": {"done": i % 2 == 0, "by": {"uuid": uuid.UUID(int=i).bytes}},
        }
        for i in range(2500)
    ])
    tasks["counters"].insert_one({"_id": "owner", "total": 2500})
    auth = client[f"{prefix}auth"]
    auth["users"].create_index([("email", ASCENDING)], unique=True)
    auth["users"].insert_one({"_id": "u1", "email": "a@example.com"})
    auth.create_collection("refresh_tokens")


def contents(client: MongoClient, prefix: str) -> dict[str, list[bytes]]:
    """``"<db>.<collection>"`` → its documents as raw BSON, in ``_id`` order."""
    found = {}
    for db_name in sorted(n for n in client.list_database_names() if n.startswith(prefix)):
        for name in sorted(client[db_name].list_collection_names()):
            collection = client[db_name].get_collection(name, codec_options=RAW)
            found[f"{db_name}.{name}"] = [doc.raw for doc in collection.find({}).sort("_id", ASCENDING)]
    return found


def indexes(client: MongoClient, prefix: str) -> dict[str, dict[str, tuple]]:
    """``"<db>.<collection>"`` → index name → (keys, unique)."""
    return {
        f"{db_name}.{name}": {
            index: (tuple(info["key"]), info.get("unique", False))
            for index, info in client[db_name][name].index_information().items()
        }
        for db_name in client.list_database_names()
        if db_name.startswith(prefix)
        for name in client[db_name].list_collection_names()
    }


def script(name: str, infra: Infra, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**infra.env, "MONGODB_URI": infra.mongodb_uri, "MONGODB_DB_PREFIX": prefix}
    return subprocess.run([str(ROOT / "scripts" / name), *args], env=env, capture_output=True, text=True, check=False, timeout=300)


def test_restore_after_dump_gives_back_every_document_byte_for_byte_and_every_index(
    infra: Infra, client: MongoClient, prefix: str, tmp_path: Path
) -> None:
    fill(client, prefix)
    before, before_indexes = contents(client, prefix), indexes(client, prefix)
    archive = tmp_path / "taskflow.tar"

    dumped = script("backup", infra, prefix, str(archive))
    assert dumped.returncode == 0, dumped.stderr
    assert "dumped 2502 documents of 4 collections" in dumped.stderr
    with tarfile.open(archive) as members:
        names = set(members.getnames())
        assert f"{prefix}tasks/tasks.bson.gz" in names and f"{prefix}auth/refresh_tokens.metadata.json.gz" in names
        raw = gzip.decompress(members.extractfile(f"{prefix}tasks/tasks.bson.gz").read())
        assert len(raw) == sum(map(len, before[f"{prefix}tasks.tasks"]))  # the documents and nothing else
    for database in (f"{prefix}tasks", f"{prefix}auth"):
        client.drop_database(database)
    assert contents(client, prefix) == {}

    restored = script("restore", infra, prefix, str(archive))
    assert restored.returncode == 0, restored.stderr
    assert contents(client, prefix) == before
    assert indexes(client, prefix) == before_indexes
    assert before_indexes[f"{prefix}auth.users"]["email_1"] == ((("email", 1),), True)


def test_restore_into_a_database_that_has_collections_is_refused_and_writes_nothing(
    infra: Infra, client: MongoClient, prefix: str, tmp_path: Path
) -> None:
    fill(client, prefix)
    archive = tmp_path / "taskflow.tar"
    assert script("backup", infra, prefix, str(archive)).returncode == 0
    client[f"{prefix}tasks"].drop_collection("counters")
    client[f"{prefix}auth"]["users"].delete_many({})
    before = contents(client, prefix)

    refused = script("restore", infra, prefix, str(archive))
    assert refused.returncode == 1
    assert f"the target already has {prefix}auth.refresh_tokens, {prefix}auth.users" in refused.stderr
    assert contents(client, prefix) == before
    assert "counters" not in client[f"{prefix}tasks"].list_collection_names()


def test_a_failed_dump_leaves_no_archive(infra: Infra, prefix: str, tmp_path: Path) -> None:
    archive = tmp_path / "taskflow.tar"
    env = {**infra.env, "MONGODB_URI": "mongodb://127.0.0.1:1/", "MONGODB_DB_PREFIX": prefix}
    failed = subprocess.run([str(ROOT / "scripts" / "backup"), str(archive)], env=env, capture_output=True, text=True, check=False)
    assert failed.returncode == 1 and "dump failed: " in failed.stderr and "Traceback" not in failed.stderr
    assert list(tmp_path.iterdir()) == []


def test_restoring_a_file_that_is_not_an_archive_fails_and_writes_nothing(
    infra: Infra, client: MongoClient, prefix: str, tmp_path: Path
) -> None:
    not_an_archive = tmp_path / "notes.tar"
    not_an_archive.write_text("not a tar")
    refused = script("restore", infra, prefix, str(not_an_archive))
    assert refused.returncode == 1 and "restore failed: " in refused.stderr and "Traceback" not in refused.stderr
    assert contents(client, prefix) == {}
