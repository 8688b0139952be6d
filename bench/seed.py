"""Arm B7's data: tasks written in the service's own document format by the service's own code
(:func:`taskflow_tasks.tasks.new_task`, :func:`taskflow_tasks.store.stored_document`, the
counters from :mod:`taskflow_tasks.counts` written by its ``CountStore``), in bulk.

Each owner's tasks go in with ``insert_many`` through FerretDB, as the service would have left
them once their events were published (``_outbox: []``), and the owner's counters with one
``claim``/``finish`` of the whole delta, exactly the document a sequence of creates leaves.
The other users' million tasks are copies of one such owner made inside PostgreSQL (FerretDB's
postgresql handler keeps each document as one ``jsonb`` row): only ``_id`` and ``owner_id``
change, so every copy is a valid task of a distinct owner with exact counters, written in
seconds instead of minutes.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from taskflow_common.events.outbox import OUTBOX_FIELD
from taskflow_tasks import counts
from taskflow_tasks.schemas import PRIORITIES, TaskCreate
from taskflow_tasks.store import COUNTS, TASKS, CountStore, stored_document
from taskflow_tasks.tasks import new_task

BATCH = 2000
STATUSES = ("todo",) * 6 + ("in_progress",) * 2 + ("done",) * 2


def body(number: int, now: datetime) -> TaskCreate:
    """The ``number``-th seeded task's request body: a spread of statuses, priorities, due dates
    (none, past, today, future) and tags."""
    due = None if number % 3 == 0 else now + timedelta(days=number % 31 - 15, hours=number % 7)
    return TaskCreate(
        title=f"Seeded task {number}",
        description="Seeded by make bench" if number % 2 else "",
        status=STATUSES[number % len(STATUSES)],
        priority=PRIORITIES[number % len(PRIORITIES)],
        due_date=due,
        tags=["bench", f"group-{number % 5}"] if number % 4 == 0 else [],
    )


def tasks_of(owner_id: str, count: int, now: datetime) -> list[dict[str, Any]]:
    """``count`` tasks of ``owner_id`` created one millisecond apart over the last 30 days."""
    start = (now - timedelta(days=30)).replace(microsecond=0)
    return [new_task(ObjectId(), owner_id, body(number, now), start + timedelta(milliseconds=number), number)
            for number in range(count)]


def counter_change(tasks: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The counters' delta of creating ``tasks``: the sum of each one's contribution."""
    change: Counter[str] = Counter()
    for task in tasks:
        change.update(counts.contribution(task))
    return dict(change)


def seed_owner(db: Any, count_store: CountStore, owner_id: str, count: int, now: datetime) -> None:
    """Insert ``count`` tasks of ``owner_id`` and their counters (two insert streams at once)."""
    tasks = tasks_of(owner_id, count, now)
    documents = [stored_document(task, {OUTBOX_FIELD: []}) for task in tasks]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda start: db[TASKS].insert_many(documents[start:start + BATCH], ordered=False),
                      range(0, len(documents), BATCH)))
    change = counter_change(tasks)
    _, operators = counts.apply({"_id": owner_id, **counts.empty()}, change, now)
    intent = {"id": f"seed-{owner_id}", "task_id": tasks[-1]["_id"], "deleting": False,
              "delta": [{"path": path, "amount": amount} for path, amount in sorted(change.items())]}
    count_store.claim(owner_id, intent, now, lambda leftover: None)
    operators["$set"] = {**operators.get("$set", {}), "next_seq": count, "last_created_at": tasks[-1]["created_at"]}
    count_store.finish(owner_id, intent["id"], operators)


BULK_LOAD_SETTINGS = {"maintenance_work_mem": "1GB", "max_wal_size": "8GB"}
"""The arm's own PostgreSQL, set for loading: index builds sort in memory, no checkpoint every
few seconds. Neither changes how a query that reads the table runs."""


def prepare_bulk_load(psql: list[str]) -> None:
    """Apply :data:`BULK_LOAD_SETTINGS` to the running server (``ALTER SYSTEM``, then a reload)."""
    statements = [f"ALTER SYSTEM SET {name} = '{value}'" for name, value in BULK_LOAD_SETTINGS.items()]
    argv = [*psql, *(arg for statement in [*statements, "SELECT pg_reload_conf()"] for arg in ("-c", statement))]
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _tables(psql: list[str], database: str) -> dict[str, str]:
    """FerretDB's PostgreSQL table of each collection of ``database``."""
    tables = subprocess.run(
        [*psql, "-c", f"SELECT _jsonb->>'_id', _jsonb->>'table' FROM {database}._ferretdb_database_metadata"],
        check=True, capture_output=True, text=True).stdout
    return dict(line.split("|") for line in tables.split())


def count_rows(psql: list[str], database: str, collection: str) -> int:
    """The documents of ``collection``, counted by PostgreSQL (FerretDB 1.24 answers ``count``
    without a filter by reading every document: minutes for a million)."""
    table = _tables(psql, database)[collection]
    counted = subprocess.run([*psql, "-c", f'SELECT count(*) FROM {database}."{table}"'],
                             check=True, capture_output=True, text=True).stdout
    return int(counted)


def replicate_owner(psql: list[str], database: str, owner_id: str, copies: int) -> None:
    """``copies`` more owners with exactly ``owner_id``'s tasks and counters, made in PostgreSQL:
    owner ``md5('owner' || n)[:24]``, task ``_id`` ``md5(n || _id)[:24]`` (24 hex digits, an ObjectId)."""
    table = _tables(psql, database)
    new_owner = "to_jsonb(substr(md5('owner' || g::text), 1, 24))"
    script = f"""
        INSERT INTO {database}."{table[TASKS]}" (_jsonb)
        SELECT jsonb_set(jsonb_set(t._jsonb, '{{_id}}', to_jsonb(substr(md5(g::text || (t._jsonb->>'_id')), 1, 24))),
                         '{{owner_id}}', {new_owner})
        FROM {database}."{table[TASKS]}" t, generate_series(1, {copies}) g
        WHERE t._jsonb->>'owner_id' = '{owner_id}';
        INSERT INTO {database}."{table[COUNTS]}" (_jsonb)
        SELECT jsonb_set(c._jsonb, '{{_id}}', {new_owner})
        FROM {database}."{table[COUNTS]}" c, generate_series(1, {copies}) g
        WHERE c._jsonb->>'_id' = '{owner_id}';
        ANALYZE {database}."{table[TASKS]}";
    """
    subprocess.run([*psql, "-c", script], check=True, capture_output=True, text=True)
