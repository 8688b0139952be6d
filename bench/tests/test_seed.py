"""The seeded counters are exactly what creating the same tasks one by one leaves; the copies made\nin SQLite are consistent users, each with ids of its own."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bson import ObjectId
from taskflow_admin.search import trigrams
from taskflow_notify.notifications import notification_id
from taskflow_tasks import counts

from bench.seed import PROBE_TASKS, TEMPLATE_EMAIL, TEMPLATE_NAME, copy_template, counter_change, layout, remap, table, tasks_of


def test_bulk_counters_equal_one_create_at_a_time() -> None:
    now = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)
    tasks = tasks_of("owner", 450, now)
    one_by_one = {"_id": "owner", **counts.empty()}
    for task in tasks:
        one_by_one, _ = counts.apply(one_by_one, counts.delta(None, task), now)
    bulk, _ = counts.apply({"_id": "owner", **counts.empty()}, counter_change(tasks), now)
    assert bulk == one_by_one
    assert bulk["total"] == 450 and sum(bulk["by_status"].values()) == 450


def test_seeded_tasks_are_in_creation_order_with_a_spread_of_fields() -> None:
    tasks = tasks_of("owner", 40, datetime(2030, 6, 15, tzinfo=UTC))
    assert [task["seq"] for task in tasks] == list(range(40))
    assert all(a["created_at"] < b["created_at"] for a, b in zip(tasks, tasks[1:]))
    assert {task["status"] for task in tasks} == {"todo", "in_progress", "done"}
    assert any(task["due_date"] is None for task in tasks) and any(task["tags"] for task in tasks)


def test_layouts_keep_the_probe_and_grow_the_rest() -> None:
    small, middle, large = (layout(size) for size in (1_000, 100_000, 1_000_000))
    assert small.probe == middle.probe == large.probe == PROBE_TASKS
    assert small.tasks == 1_000 and 0.999 < middle.tasks / 100_000 <= 1 and 0.999 < large.tasks / 1_000_000 <= 1
    assert large.big == 100_000 and large.owners + 2 == 1_000


def _document(**fields: object) -> str:
    schema = {"p": {name: {"t": "string"} for name in fields}, "$k": list(fields)}
    return json.dumps({"$s": schema, **fields}, separators=(",", ":"))


def _ferretdb_file(path: Path, collections: dict[str, list[str]]) -> None:
    """A database file laid out as FerretDB's SQLite backend lays it out (tables of JSON text)."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE _ferretdb_collections (name TEXT, table_name TEXT, settings TEXT)")
        for number, (name, documents) in enumerate(collections.items()):
            connection.execute("INSERT INTO _ferretdb_collections VALUES (?, ?, '{}')", (name, f"{name}_{number}"))
            connection.execute(f'CREATE TABLE "{name}_{number}" (_ferretdb_sjson TEXT NOT NULL)')
            connection.execute(f'CREATE UNIQUE INDEX "{name}_{number}__id_" ON "{name}_{number}" (_ferretdb_sjson->"_id")')
            connection.executemany(f'INSERT INTO "{name}_{number}" VALUES (?)', [(document,) for document in documents])


def _stored(directory: Path, database: str, collection: str) -> list[dict[str, object]]:
    with sqlite3.connect(directory / f"{database}.sqlite") as connection:
        return [json.loads(text) for (text,) in connection.execute(f'SELECT _ferretdb_sjson FROM "{table(connection, collection)}"')]


def test_copies_are_consistent_users_with_their_own_tasks_and_notification_ids(tmp_path: Path) -> None:
    user, task, other = str(ObjectId()), str(ObjectId()), str(ObjectId())
    welcome, reminder = notification_id(f"welcome:{user}"), notification_id(f"reminder:{task}:2030-01-01")
    event = str(uuid.uuid4())
    verify = notification_id(f"verify_email:{event}")  # keyed by an event id, not by the user
    empty = {name: [] for name in ("users", "tasks", "task_counts", "audit", "recipients", "reminders")}
    _ferretdb_file(tmp_path / "taskflow_auth.sqlite", {"users": [_document(_id=user, email=TEMPLATE_EMAIL)]})
    _ferretdb_file(tmp_path / "taskflow_tasks.sqlite", {
        "tasks": [_document(_id=task, owner_id=user), _document(_id=other, owner_id="someone")],
        "task_counts": [_document(_id=user)]})
    _ferretdb_file(tmp_path / "taskflow_admin.sqlite", {**empty, "search": [
        _document(_id=f"{user}\n2\nuse", user_id=user, version="2", trigram="use")], "audit": [
        _document(_id=event, type="task.created", subject_id=task, actor_id=user),
        _document(_id=str(uuid.uuid4()), type="notification.sent", subject_id=welcome, actor_id=user)]})
    _ferretdb_file(tmp_path / "taskflow_notify.sqlite", {**empty, "notifications": [
        _document(_id=welcome, key=f"welcome:{user}", user_id=user),
        _document(_id=verify, key=f"verify_email:{event}", user_id=user),
        _document(_id=reminder, key=f"reminder:{task}:2030-01-01", user_id=user, subject_id=task)]})

    inserted = copy_template(tmp_path, user, {task}, range(1, 5), range(1, 3), log=lambda line: None)

    assert inserted["taskflow_auth.users"] == 4 and inserted["taskflow_tasks.tasks"] == 2
    assert inserted["taskflow_admin.audit"] == 4 + 2 and inserted["taskflow_notify.notifications"] == 2 * 4 + 2
    notifications = _stored(tmp_path, "taskflow_notify", "notifications")
    assert all(document["_id"] == notification_id(document["key"]) for document in notifications)
    assert len({document["_id"] for document in notifications}) == len(notifications)
    assert {document["user_id"] for document in notifications} == {user, *(remap(user, n) for n in range(1, 5))}
    copied = [document for document in _stored(tmp_path, "taskflow_tasks", "tasks") if document["owner_id"] == remap(user, 2)]
    assert [document["_id"] for document in copied] == [remap(task, 2)]
    assert ObjectId(remap(task, 2)).generation_time == ObjectId(task).generation_time
    emails = {document["email"] for document in _stored(tmp_path, "taskflow_auth", "users")}
    assert emails == {TEMPLATE_EMAIL, *(f"user-{n:010x}@bench.example" for n in range(1, 5))}
    audit = _stored(tmp_path, "taskflow_admin", "audit")
    assert len({entry["_id"] for entry in audit}) == 2 + 6 and all(uuid.UUID(entry["_id"]) for entry in audit)
    sent = [entry for entry in audit if entry["type"] == "notification.sent"]
    assert {entry["subject_id"] for entry in sent} == {notification_id(f"welcome:{entry['actor_id']}") for entry in sent}
    postings = _stored(tmp_path, "taskflow_admin", "search")
    for number in range(1, 5):
        held = {posting["trigram"] for posting in postings if posting["user_id"] == remap(user, number)}
        assert held == trigrams(f"user-{number:010x}@bench.example") | trigrams(TEMPLATE_NAME)
    assert all(posting["_id"] == f"{posting['user_id']}\n2\n{posting['trigram']}" for posting in postings)
    assert inserted["taskflow_admin.search"] == len(postings) - 1
