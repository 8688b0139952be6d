"""Dump TaskFlow's databases to one file and restore them into an empty server, with pymongo alone.

Debian ships no MongoDB Database Tools (``mongodump``/``mongorestore``), so ``scripts/backup`` and
``scripts/restore`` use this module against the local FerretDB (or any MongoDB-compatible server).
The file is a tar archive laid out as ``mongodump --gzip --out`` lays out a directory: for every
collection of every database whose name starts with the prefix, ``<db>/<collection>.bson.gz`` (its
documents as concatenated BSON, byte for byte as the server returned them) and
``<db>/<collection>.metadata.json.gz`` (its indexes, in MongoDB Extended JSON v2, canonical mode).

FerretDB has no oplog, so a dump of a system that is writing is not one point in time: each
collection is read once, in turn. Dump a quiet system for an exact copy.

Usage: ``python -m taskflow_common.backup dump|restore --uri URI [--prefix PREFIX] FILE``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bson import decode_file_iter, json_util
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

RAW = CodecOptions(document_class=RawBSONDocument)
BATCH = 1000
"""Documents per insert while restoring."""


class TargetNotEmpty(SystemExit):
    """Restore refused: a database it would write already holds collections (nothing was written)."""


def _databases(client: MongoClient, prefix: str) -> list[str]:
    return sorted(name for name in client.list_database_names() if name.startswith(prefix))


def _collections(database: Database) -> list[str]:
    return sorted(name for name in database.list_collection_names() if not name.startswith("system."))


def _add(archive: tarfile.TarFile, name: str, data: IO[bytes]) -> None:
    member = tarfile.TarInfo(name)
    member.size = data.seek(0, io.SEEK_END)
    member.mode = 0o600
    data.seek(0)
    archive.addfile(member, data)


def dump(client: MongoClient, prefix: str, path: Path) -> dict[str, int]:
    """Write every collection of the databases named ``<prefix>*`` to the tar archive ``path``.

    Returns ``"<db>.<collection>"`` → documents written. The archive appears at ``path`` only once
    complete (it is written beside it as ``<path>.partial`` first, removed if the dump fails).
    Raises ``pymongo.errors.PyMongoError`` when the server does not answer.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        counts = _write(client, prefix, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return counts


def _write(client: MongoClient, prefix: str, partial: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with tarfile.open(partial, "w") as archive:
        for db_name in _databases(client, prefix):
            database = client[db_name]
            for name in _collections(database):
                collection = database.get_collection(name, codec_options=RAW)
                count = 0
                # tar needs each member's size first: the compressed documents wait in a temporary file.
                with tempfile.TemporaryFile() as documents:
                    with gzip.GzipFile(fileobj=documents, mode="wb") as compressed:
                        for document in collection.find({}, batch_size=BATCH):
                            compressed.write(document.raw)
                            count += 1
                    _add(archive, f"{db_name}/{name}.bson.gz", documents)
                indexes = [dict(spec) for spec in database[name].list_indexes()]
                metadata = {"indexes": indexes, "collectionName": name, "options": {}, "type": "collection"}
                extended_json = json_util.dumps(metadata, json_options=json_util.CANONICAL_JSON_OPTIONS)
                _add(archive, f"{db_name}/{name}.metadata.json.gz", io.BytesIO(gzip.compress(extended_json.encode())))
                counts[f"{db_name}.{name}"] = count
    return counts


@dataclass(frozen=True)
class _Entry:
    """One collection of an archive: where its documents are and what its metadata says."""

    database: str
    collection: str
    documents: tarfile.TarInfo
    metadata: dict[str, Any]


def _entries(archive: tarfile.TarFile) -> list[_Entry]:
    """Every collection in ``archive``, in the order of their names."""
    members = {member.name: member for member in archive.getmembers() if member.isfile()}
    entries = []
    for name in sorted(members):
        if not name.endswith(".bson.gz"):
            continue
        db_name, collection = name.removesuffix(".bson.gz").split("/", 1)
        metadata_file = archive.extractfile(members[f"{db_name}/{collection}.metadata.json.gz"])
        metadata = json_util.loads(gzip.decompress(metadata_file.read()))
        entries.append(_Entry(db_name, collection, members[name], metadata))
    return entries


def restore(client: MongoClient, path: Path) -> dict[str, int]:
    """Create the collections and indexes of the archive ``path`` (from :func:`dump`) and insert
    their documents, byte for byte.

    Returns ``"<db>.<collection>"`` → documents inserted. Raises :class:`TargetNotEmpty`, before
    writing anything, when a database of the archive already has a collection: a restore goes
    into an empty server (drop the databases first to replace them).
    """
    with tarfile.open(path, "r") as archive:
        entries = _entries(archive)
        occupied = sorted(
            f"{db_name}.{name}"
            for db_name in {entry.database for entry in entries}
            for name in client[db_name].list_collection_names()
        )
        if occupied:
            raise TargetNotEmpty(f"restore refused: the target already has {', '.join(occupied)}; nothing was written")
        return {f"{entry.database}.{entry.collection}": _restore_one(client, archive, entry) for entry in entries}


def _restore_one(client: MongoClient, archive: tarfile.TarFile, entry: _Entry) -> int:
    database = client[entry.database]
    database.create_collection(entry.collection)
    indexes = [
        {key: value for key, value in spec.items() if key not in {"v", "ns"}}
        for spec in entry.metadata["indexes"]
        if spec["name"] != "_id_"
    ]
    if indexes:
        database.command({"createIndexes": entry.collection, "indexes": indexes})
    collection = database.get_collection(entry.collection, codec_options=RAW)
    batch: list[RawBSONDocument] = []
    count = 0
    with gzip.GzipFile(fileobj=archive.extractfile(entry.documents)) as documents:
        for document in decode_file_iter(documents, codec_options=RAW):
            batch.append(document)
            if len(batch) == BATCH:
                collection.insert_many(batch)
                count += len(batch)
                batch = []
    if batch:
        collection.insert_many(batch)
        count += len(batch)
    return count


def main(argv: list[str] | None = None) -> None:
    """The command line of ``scripts/backup`` (``dump``) and ``scripts/restore`` (``restore``)."""
    parser = argparse.ArgumentParser(prog="taskflow_common.backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("dump", "restore"))
    parser.add_argument("file", type=Path, help="the archive to write (dump) or read (restore)")
    parser.add_argument("--uri", required=True, help="the MongoDB-compatible server")
    parser.add_argument("--prefix", default="taskflow_", help="dump the databases named <prefix>* (taskflow_)")
    args = parser.parse_args(argv)
    client: MongoClient = MongoClient(args.uri, serverSelectionTimeoutMS=10000)
    try:
        if args.command == "dump":
            counts = dump(client, args.prefix, args.file)
        else:
            counts = restore(client, args.file)
    except (PyMongoError, OSError) as error:
        raise SystemExit(f"{args.command} failed: {error}") from None
    except (tarfile.TarError, KeyError) as error:
        raise SystemExit(f"{args.command} failed: {args.file} is not an archive of scripts/backup ({error})") from None
    finally:
        client.close()
    verb = "dumped" if args.command == "dump" else "restored"
    total = sum(counts.values())
    print(f"{verb} {total} documents of {len(counts)} collections ({args.file})", file=sys.stderr)


if __name__ == "__main__":
    main()
