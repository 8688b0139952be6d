"""Arm B7's data: tasks written in the service's own document format by the service's own code,
and copies of one user made inside FerretDB's SQLite files.

:func:`seed_owner` writes an owner's tasks with ``insert_many`` through FerretDB in the service's
own format (:func:`taskflow_tasks.tasks.new_task`, :func:`taskflow_tasks.store.stored_document`),
as the service leaves them once their events are published (``_outbox: []``), and the owner's
counters with one ``claim``/``finish`` of the whole delta (:mod:`taskflow_tasks.counts`), exactly
the document a sequence of creates leaves. About 0.7 ms a task: minutes for a million.

:func:`copy_template` makes the rest: every document the running system wrote about one template
user and their tasks (auth's user, tasks' tasks and counters, admin's read models and audit
entries, notify's recipient, inbox and reminders) is copied inside SQLite, where FerretDB keeps
each collection as a table of JSON text (one ``_ferretdb_sjson`` column, the type schema under
``$s``). A copy differs from its template only in identifiers, each the same length and type:
the middle ten hex digits of every template ObjectId (user and tasks: the 5 bytes an ObjectId
leaves to its process) become the copy's number, and so does the number in the template's
email; ids derived from those (a notification's UUID v5 of its key) are derived again, and an
audit entry's event id gets the number in its last ten digits. So copy ``n`` is a consistent
user, with tasks, counters, read models and audit trail that point at each other, written as the
services would have, and SQLite maintains the indexes FerretDB declared.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bson import ObjectId
from taskflow_admin.search import trigrams
from taskflow_common.events.outbox import OUTBOX_FIELD
from taskflow_notify.notifications import notification_id
from taskflow_tasks import counts
from taskflow_tasks.schemas import PRIORITIES, TaskCreate
from taskflow_tasks.store import TASKS, CountStore, stored_document
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



# -- the stores of each size -------------------------------------------------------------------

PROBE_TASKS = 100
"""The measured user's tasks, the same at every size: only the store around them grows."""
OWNERS = 1_000
USERS = 100_000


@dataclass(frozen=True)
class Layout:
    """Who owns the tasks of a store of nominally ``size`` tasks.

    ``probe``: the measured user's tasks; ``big``: one owner with a tenth of the store (100,000 at
    a million); ``owners`` × ``per_owner``: the template user and their copies. With the probe and
    the big owner there are :data:`OWNERS` owners (fewer at 1,000 tasks, where each other owner
    has one task) among :data:`USERS` users.
    """

    size: int
    probe: int
    big: int
    owners: int
    per_owner: int

    @property
    def tasks(self) -> int:
        return self.probe + self.big + self.owners * self.per_owner


def layout(size: int) -> Layout:
    """The :class:`Layout` of a store of ``size`` tasks (at least 1,000)."""
    big = size // 10
    others = size - PROBE_TASKS - big
    owners = min(OWNERS - 2, others)
    return Layout(size, PROBE_TASKS, big, owners, others // owners)


# -- copies inside SQLite ----------------------------------------------------------------------

CODE = slice(8, 18)
"""Where a copy's number goes in an ObjectId's 24 hex digits: the 5 bytes after its timestamp."""
TEMPLATE_EMAIL = "user-0000000000@bench.example"
"""The template user's email; copy ``n`` has ``n`` (10 hex digits) in place of the zeros."""
TEMPLATE_NAME = "Bench user"
EMAIL_CODE = 5
_HEX_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{24}(?![0-9a-f])")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def code(number: int) -> str:
    """Copy ``number``'s 10 hex digits."""
    return f"{number:010x}"


def remap(object_id: str, number: int) -> str:
    """Copy ``number``'s version of a template ObjectId (hex)."""
    return object_id[:CODE.start] + code(number) + object_id[CODE.stop:]


def pieces(text: str, object_ids: set[str], own_id_offset: int | None = None) -> list[str]:
    """``text`` cut where a copy's number goes: the middle of each of ``object_ids``, the zeros
    of :data:`TEMPLATE_EMAIL`, and (``own_id_offset``) the document's own string ``_id`` from
    that offset to its end (10 characters)."""
    cuts = [match.start() + CODE.start for match in _HEX_ID.finditer(text) if match.group() in object_ids]
    start = text.find(TEMPLATE_EMAIL)
    while start >= 0:
        cuts.append(start + EMAIL_CODE)
        start = text.find(TEMPLATE_EMAIL, start + 1)
    if own_id_offset is not None:
        own = json.loads(text)["_id"]
        cuts.append(text.index(f'"_id":"{own}"') + len('"_id":"') + own_id_offset)
    cuts.sort()
    bounds = [0, *(at for cut in cuts for at in (cut, cut + 10)), len(text)]
    return [text[bounds[i]:bounds[i + 1]] for i in range(0, len(bounds), 2)]


class NotificationIds:
    """Notification ids (UUID v5 of the notification's key) in copies of documents: each template
    notification id is replaced by the id of its key in the copy. A key that names no template id
    (``verify_email:<event id>``) gets the copy's number appended, in the document's ``key`` too,
    so each copy's id is its own."""

    def __init__(self, keys: dict[str, str], object_ids: set[str]) -> None:
        self.keys = {identifier: pieces(key, object_ids) for identifier, key in keys.items()}
        self.bare = {key: [f"{key}#copy-", ""] for key in keys.values() if len(pieces(key, object_ids)) == 1}
        for identifier, key in keys.items():
            self.keys[identifier] = self.bare.get(key, self.keys[identifier])
        found = [*keys, *(f'"{key}"' for key in self.bare)]
        self._pattern = re.compile("|".join(map(re.escape, found))) if found else None

    def fix(self, text: str, number: int) -> str:
        if self._pattern is None:
            return text

        def replace(match: re.Match[str]) -> str:
            if match.group() in self.keys:
                return notification_id(code(number).join(self.keys[match.group()]))
            return f'"{code(number).join(self.bare[match.group()[1:-1]])}"'

        return self._pattern.sub(replace, text)


@dataclass(frozen=True)
class Collection:
    """A collection to copy the template's documents of.

    ``scope``: ``user`` (one copy per user), ``owner`` (one per owner of tasks) or ``mixed``
    (documents naming one of the template's tasks per owner, the others per user);
    ``own_id_offset``: see :func:`pieces` (audit entries keyed by event id).
    """

    database: str
    name: str
    scope: str
    own_id_offset: int | None = None


COLLECTIONS = (
    Collection("taskflow_auth", "users", "user"),
    Collection("taskflow_tasks", "tasks", "owner"),
    Collection("taskflow_tasks", "task_counts", "owner"),
    Collection("taskflow_admin", "users", "user"),
    Collection("taskflow_admin", "tasks", "owner"),
    Collection("taskflow_admin", "audit", "mixed", own_id_offset=26),
    Collection("taskflow_notify", "recipients", "user"),
    Collection("taskflow_notify", "notifications", "mixed"),
    Collection("taskflow_notify", "reminders", "owner"),
)
"""Everything the services keep about a user and their tasks, but what expires: refresh tokens,
deliveries (kept 30 days after they finish), processed event ids, locks; and admin's search
index, whose postings differ from copy to copy in number (see :func:`search_postings`)."""
SEARCH = Collection("taskflow_admin", "search", "user")
BATCH_ROWS = 20_000


def table(connection: sqlite3.Connection, collection: str) -> str:
    """FerretDB's table of ``collection`` in an open database file."""
    (name,) = connection.execute("SELECT table_name FROM _ferretdb_collections WHERE name = ?", (collection,)).fetchone()
    return name


def template_documents(connection: sqlite3.Connection, collection: str, user_id: str) -> list[str]:
    """The documents of ``collection`` that name the template user (read once, before any copy)."""
    rows = connection.execute(f'SELECT _ferretdb_sjson FROM "{table(connection, collection)}" WHERE instr(_ferretdb_sjson, ?) > 0',
                              (user_id,))
    return [text for (text,) in rows]


def _insert(connection: sqlite3.Connection, name: str, documents: Iterable[str]) -> int:
    """Insert ``documents`` in transactions of :data:`BATCH_ROWS`, so FerretDB's own writes get in between."""
    inserted, batch = 0, []
    for document in documents:
        batch.append((document,))
        if len(batch) == BATCH_ROWS:
            inserted += _commit(connection, name, batch)
            batch = []
    return inserted + (_commit(connection, name, batch) if batch else 0)


def _commit(connection: sqlite3.Connection, name: str, batch: list[tuple[str]]) -> int:
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(f'INSERT INTO "{name}" (_ferretdb_sjson) VALUES (?)', batch)
    connection.execute("COMMIT")
    return len(batch)


def copies(templates: Sequence[list[str]], numbers: Iterable[int], fix: Callable[[str, int], str]) -> Iterator[str]:
    """Every template (cut by :func:`pieces`) for copy number after copy number."""
    for number in numbers:
        middle = code(number)
        for cut in templates:
            yield fix(middle.join(cut), number)


def search_postings(template: str, numbers: Iterable[int]) -> Iterator[str]:
    """Admin's search postings (:mod:`taskflow_admin.search`) of each copy's email and
    :data:`TEMPLATE_NAME`, in the format of one of the template user's postings, ``template``."""
    model = json.loads(template)
    user_id, version = model["user_id"], model["version"]
    for number in numbers:
        copy_id, email = remap(user_id, number), TEMPLATE_EMAIL.replace("0" * 10, code(number))
        for trigram in sorted(trigrams(email) | trigrams(TEMPLATE_NAME)):
            model.update(_id=f"{copy_id}\n{version}\n{trigram}", user_id=copy_id, trigram=trigram)
            yield json.dumps(model, separators=(",", ":"), ensure_ascii=False)


def copy_template(data_dir: Path, user_id: str, task_ids: set[str], users: range, owners: range,
                  log: Callable[[str], None] = print) -> dict[str, int]:
    """Copy everything the services keep about template user ``user_id`` (email
    :data:`TEMPLATE_EMAIL`) and their tasks ``task_ids``: once per number of ``users``, and the
    task-related documents once per number of ``owners`` (a subset: the first users own tasks).

    ``data_dir``: FerretDB's SQLite directory (``<database>.sqlite`` files); FerretDB may run.
    Returns the documents inserted per ``database.collection``.

    Raises:
        ValueError: two copies would share an id (the template's ids differ only in their middles).
    """
    object_ids = {user_id, *task_ids}
    if len({oid[:CODE.start] + oid[CODE.stop:] for oid in object_ids}) != len(object_ids):
        raise ValueError("template ids that differ only in their middle digits would collide in copies")
    if any(int(oid[CODE], 16) in users for oid in object_ids):
        raise ValueError("a template id's middle is a copy number")
    connections = {name: sqlite3.connect(data_dir / f"{name}.sqlite", timeout=120, isolation_level=None)
                   for name in {collection.database for collection in COLLECTIONS}}
    try:
        notifications = {}
        for text in template_documents(connections["taskflow_notify"], "notifications", user_id):
            document = json.loads(text)
            notifications[document["_id"]] = document["key"]
        ids = NotificationIds(notifications, object_ids)
        inserted = {}
        for collection in COLLECTIONS:
            connection = connections[collection.database]
            found = template_documents(connection, collection.name, user_id)
            by_scope: dict[str, list[list[str]]] = {"user": [], "owner": []}
            for text in found:
                scope = collection.scope
                if scope == "mixed":
                    scope = "owner" if any(match.group() in task_ids for match in _HEX_ID.finditer(text)) else "user"
                by_scope[scope].append(pieces(text, object_ids, collection.own_id_offset))
            name = table(connection, collection.name)
            count = _insert(connection, name, copies(by_scope["user"], users, ids.fix))
            count += _insert(connection, name, copies(by_scope["owner"], owners, ids.fix))
            inserted[f"{collection.database}.{collection.name}"] = count
            log(f"copied {len(found)} documents of {collection.database}.{collection.name}: {count:,} rows")
        connection = connections[SEARCH.database]
        [template, *_] = template_documents(connection, SEARCH.name, user_id)
        count = _insert(connection, table(connection, SEARCH.name), search_postings(template, users))
        inserted[f"{SEARCH.database}.{SEARCH.name}"] = count
        log(f"indexed the copies for admin's search: {count:,} postings")
        for connection in connections.values():
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return inserted
    finally:
        for connection in connections.values():
            connection.close()
