"""Every MongoDB query of the tasks service, with the indexes they need declared in one place.

Collections:

- ``tasks``: one document per task, with its pending events in ``_outbox``. Besides the public
  fields it stores what the sorts need that MongoDB cannot compute from them in an index:
  ``seq`` (the owner's creation number: creation order, and the tie-break of every sort),
  ``priority_rank`` (low 0 … urgent 3), ``title_key`` (case-folded title), ``due_missing``
  (so tasks without a due date sort last), and ``_intent`` (the counter intent of the last write
  that changed its counters).
  A deleted task is a tombstone until its ``task.deleted`` is published: ``_deleted: true`` with
  ``owner_id`` moved to ``deleted_owner_id``, so no owner-scoped query can see it.
- ``task_counts``: per owner (``_id``), the counters of :mod:`.counts`, the next ``seq``, the
  last ``created_at``, and ``pending``, the claim and write-ahead record of a change in flight.

Why counters, and how they stay exact without transactions
------------------------------------------------------------
``GET /tasks/stats`` must cost the same for 100 or 100,000 tasks, so it reads the owner's
counters instead of counting tasks. A task and its owner's counters are two documents, and
neither MongoDB without a replica set nor FerretDB has transactions, so a write that changes
the counters goes:

1. **claim**: one conditional update of the counters, only while ``pending`` is null, sets
   ``pending: {id, task_id, kind, delta, …, lease_until}`` (the intent) and, for a new task,
   takes the next ``seq``; it returns the counters as they were. A write that finds another
   change pending waits for it (``pending`` is the owner's only mutual exclusion; the writes of
   one owner in one process first take turns, :meth:`CountStore.turn`, so that only one of them
   polls);
2. **write** the task (with its events), conditional on the version it was computed from;
3. **finish**: apply the delta to the counters and clear ``pending``, conditional on ``pending.id``.

The task write of step 2 stores the intent's id in the task (``_intent``) and is conditional on
the task's ``version`` *and* ``_intent`` as read (a new task: on its id being free). A process
dying between the steps leaves ``pending`` behind; once its lease has passed, whoever next
claims the counters (or reads statistics) *settles* it. Settling first fences the task write
off, so that it cannot land later (a request slower than the lease is still alive):

- a change or delete: ``_intent`` is set to ``fenced:<id>`` if the task is still at the version
  and ``_intent`` the write was conditional on: if that matched, the write never happened and
  never will, and the delta is dropped;
- a new task: a placeholder is inserted with its id (no owner, so no query sees it; it expires
  after a day): if that succeeded, the insert never happened and never will.

Otherwise the write happened if the task carries the intent's id, and the delta is applied. (The
version alone would not tell: a change of the title, which claims nothing, may take the version
the intent was for.) When the task is gone altogether (a tombstone purged), or a counter would go
negative, nothing is guessed: the owner's counters are recounted from their tasks (a read of all
of them, only then). A write that fails at step 2 settles its own intent at once. So the counters
always describe exactly the tasks that exist, whatever crashes or stalls; a write that changes no
counter (a new title, say) skips steps 1 and 3.

Lists
-----
Every list is one indexed query: the owner's equality filters, then the sort's fields and ``seq``
(``INDEXES``); the engine reads the index in order and stops at the page (on FerretDB, the
``sqlite-typed-*`` patches of ``scripts/patches``). The statistics' two partial days are range
counts on ``(owner_id, status, due_date)`` and ``(owner_id, completed_at)``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from taskflow_common.events.envelope import Event
from taskflow_common.events.outbox import WITHOUT_EVENTS, Outbox
from taskflow_common.expiry import Expiry
from taskflow_common.locks import Backoff
from taskflow_common.mongo import Indexes
from taskflow_common.problems import Conflict, ServiceUnavailable

from . import counts
from .schemas import PRIORITIES, STATUSES, TaskListQuery

TASKS = "tasks"
COUNTS = "task_counts"
INTENT_FIELD = "_intent"
"""On a task: the id of the counter intent whose write it was last (see "Why counters" above)."""
FENCED_FIELD = "_fenced_at"
"""On a placeholder that fences a new task's id off (see "Why counters" above): when it was made."""
PLACEHOLDER_FIELD = "_placeholder"
"""True on such a placeholder only, so the sweep reads placeholders alone, not every task."""
FENCE_RETENTION = timedelta(days=1)
"""How long a placeholder stays: far longer than any request that could still try the insert."""
EXPIRIES = (Expiry(TASKS, FENCED_FIELD, FENCE_RETENTION, marker=PLACEHOLDER_FIELD),)
OPEN_STATUSES = [status for status in STATUSES if status != "done"]
"""The statuses of an open task (the statistics' overdue count)."""

SORT_FIELDS: dict[str, tuple[str, ...]] = {
    "created_at": ("seq",),
    "updated_at": ("updated_at", "seq"),
    "due_date": ("due_missing", "due_date", "seq"),
    "priority": ("priority_rank", "seq"),
    "title": ("title_key", "seq"),
}
"""Each public sort key → the stored fields it orders by (``seq`` breaks ties in creation order)."""


def _owner_index(*fields: str) -> IndexModel:
    return IndexModel([("owner_id", ASCENDING), *((field, ASCENDING) for field in fields)])


INDEXES = (
    Indexes(
        TASKS,
        (
            *(_owner_index(*fields) for fields in SORT_FIELDS.values()),  # lists, in each order
            _owner_index("status", "due_date"),  # statistics: open tasks due earlier today
            _owner_index("completed_at"),  # statistics: tasks completed on the window's first day
        ),
    ),
    # task_counts is read and written by _id only (and listed in _id order).
)
TASK_FIELDS = ("title", "description", "status", "priority", "due_date", "tags", "owner_id",
               "created_at", "updated_at", "completed_at", "version")
LIST_PROJECTION = dict.fromkeys(TASK_FIELDS, 1)


def object_id(value: str) -> ObjectId | None:
    """The ObjectId a public id names, or None when it is not one (then nothing matches)."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


def helper_fields(task: Mapping[str, Any]) -> dict[str, Any]:
    """The stored sort fields of a task, derived from its public fields."""
    return {
        "priority_rank": PRIORITIES.index(task["priority"]),
        "title_key": task["title"].casefold(),
        "due_missing": task["due_date"] is None,
    }


def stored_document(task: Mapping[str, Any], outbox_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The document written for a new task: its fields, its helper fields and ``outbox_fields``
    (its pending events; ``{"_outbox": []}`` once they are all published)."""
    return {**task, **helper_fields(task), **outbox_fields}


def as_read(before: Mapping[str, Any], *, fenced: bool) -> dict[str, Any]:
    """The condition of a write based on task ``before`` as read: same version, and (for a write
    with a counter intent, which settling may fence off) same ``_intent``."""
    condition = {"_id": before["_id"], "version": before["version"]}
    if fenced:
        condition[INTENT_FIELD] = before.get(INTENT_FIELD)
    return condition


def sort_spec(sort: str) -> list[tuple[str, int]]:
    """A public sort (``title``, ``-due_date``…) as a MongoDB sort; one direction for every field."""
    direction = DESCENDING if sort.startswith("-") else ASCENDING
    return [(field, direction) for field in SORT_FIELDS[sort.lstrip("-")]]


def _ceil_to_millis(moment: datetime) -> datetime:
    # BSON dates hold milliseconds and pymongo truncates; "before 10:00:00.0005" must keep 10:00:00.000.
    extra = moment.microsecond % 1000
    return moment + timedelta(microseconds=1000 - extra) if extra else moment


def list_filter(owner_id: str, query: TaskListQuery, now: datetime) -> dict[str, Any]:
    """The MongoDB filter of ``GET /tasks`` for ``owner_id`` at ``now``.

    Equalities stay at the top level (FerretDB pushes those down to its storage); everything
    else goes under ``$and``.
    """
    conditions: dict[str, Any] = {"owner_id": owner_id}
    more: list[dict[str, Any]] = []
    if query.status is not None:
        conditions["status"] = query.status
    if query.priority is not None:
        conditions["priority"] = query.priority
    if query.tag is not None:
        conditions["tags"] = query.tag
    if query.q is not None:
        pattern = {"$regex": re.escape(query.q), "$options": "i"}
        more.append({"$or": [{"title": pattern}, {"description": pattern}]})
    if query.due_before is not None:
        more.append({"due_date": {"$lt": _ceil_to_millis(query.due_before)}})
    if query.due_after is not None:
        more.append({"due_date": {"$gt": query.due_after}})
    if query.overdue is True:
        more += [{"status": {"$ne": "done"}}, {"due_date": {"$lt": now}}]
    elif query.overdue is False:
        more.append({"$or": [{"status": "done"}, {"due_date": None}, {"due_date": {"$gte": now}}]})
    if more:
        conditions["$and"] = more
    return conditions


class VersionConflict(Conflict):
    """The task changed between read and write (the caller reads again; 409 only after repeated tries)."""

    def __init__(self) -> None:
        super().__init__("The task changed concurrently; retry.")


class TaskIdTaken(VersionConflict):
    """A task was to be created under a given id (an idempotent request's) that is taken: by
    that task, created before, or by a placeholder that fenced the id off."""


class TaskStore:
    """Tasks, their events (through the outbox) and the queries that list them."""

    def __init__(self, db: Callable[[], Database], outbox: Outbox) -> None:
        self._db = db
        self.outbox = outbox

    @property
    def _tasks(self):  # noqa: ANN202
        return self._db()[TASKS]

    def find(self, owner_id: str, task_id: ObjectId) -> dict[str, Any] | None:
        """The owner's live task (never a tombstone, never another owner's)."""
        return self._tasks.find_one({"_id": task_id, "owner_id": owner_id}, WITHOUT_EVENTS)

    def stored(self, task_id: ObjectId) -> dict[str, Any] | None:
        """A task, tombstone or placeholder as stored (without its events); None when absent."""
        return self._tasks.find_one({"_id": task_id}, WITHOUT_EVENTS)

    def fence_new(self, task_id: ObjectId, intent_id: str, now: datetime) -> bool:
        """Take ``task_id`` with a placeholder, so a late insert of that task fails; False when
        the id is taken already (the task was inserted, or fenced off before)."""
        try:
            self._tasks.insert_one(
                {"_id": task_id, INTENT_FIELD: f"fenced:{intent_id}", PLACEHOLDER_FIELD: True, FENCED_FIELD: now}
            )
        except DuplicateKeyError:
            return False
        return True

    def fence_change(self, task_id: ObjectId, version: int, intent: str | None, intent_id: str) -> bool:
        """Mark the task fenced if it is still at ``version`` and ``intent`` (what a claimed write
        of it was conditional on), so that write fails; False when it is no longer there."""
        condition = {"_id": task_id, "version": version, INTENT_FIELD: intent}
        return self._tasks.update_one(condition, {"$set": {INTENT_FIELD: f"fenced:{intent_id}"}}).matched_count == 1

    def counted(self, owner_id: str) -> list[dict[str, Any]]:
        """Every live task of the owner, with the fields its counters are made of."""
        fields = {"status": 1, "priority": 1, "due_date": 1, "completed_at": 1}
        return list(self._tasks.find({"owner_id": owner_id}, fields))

    def insert(self, task: dict[str, Any], events: Sequence[Event], intent_id: str) -> None:
        """Insert a new task with its events, marked as written by counter intent ``intent_id``.

        Raises:
            VersionConflict: its id is taken (fenced off by a settled intent).
        """
        try:
            with self.outbox.write(TASKS, task["_id"], events) as pending:
                self._tasks.insert_one({**stored_document(task, pending.insert_fields), INTENT_FIELD: intent_id})
        except DuplicateKeyError:
            raise VersionConflict() from None

    def update(
        self, before: Mapping[str, Any], after: Mapping[str, Any], events: Sequence[Event], intent_id: str | None
    ) -> None:
        """Replace ``before`` (as read) by ``after``'s public fields, if still at ``before``'s version;
        marked as written by counter intent ``intent_id`` when the change has one.

        Raises:
            VersionConflict: the stored version is no longer ``before``'s.
        """
        changes = {field: after[field] for field in TASK_FIELDS if field != "owner_id"}
        marker = {INTENT_FIELD: intent_id} if intent_id is not None else {}
        with self.outbox.write(TASKS, before["_id"], events) as pending:
            result = self._tasks.update_one(
                as_read(before, fenced=intent_id is not None),
                pending.update({"$set": {**changes, **helper_fields(after), **marker}}),
            )
            if result.matched_count == 0:
                raise VersionConflict()

    def tombstone(self, before: Mapping[str, Any], version: int, events: Sequence[Event], intent_id: str | None) -> None:
        """Delete a task (as read, if still at its version): a tombstone at ``version`` until its
        events are out, marked as written by counter intent ``intent_id``.

        Raises:
            VersionConflict: the stored version is no longer ``before``'s.
        """
        with self.outbox.write(TASKS, before["_id"], events) as pending:
            hidden = {"owner_id": None, "deleted_owner_id": before["owner_id"], "version": version, INTENT_FIELD: intent_id}
            result = self._tasks.update_one(as_read(before, fenced=True), pending.tombstone(hidden))
            if result.matched_count == 0:
                raise VersionConflict()

    def page(self, query: Mapping[str, Any], sort: str, skip: int, limit: int) -> list[dict[str, Any]]:
        """One page of tasks matching ``query`` (from :func:`list_filter`) in ``sort`` order."""
        found = self._tasks.find(query, LIST_PROJECTION).sort(sort_spec(sort)).skip(skip).limit(limit)
        return list(found)

    def count(self, query: Mapping[str, Any]) -> int:
        return self._tasks.count_documents(query)

    def every(self, after: ObjectId | None, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Live tasks of every owner with an id above ``after`` in id order (the ``_id`` index),
        and how many live tasks there are."""
        live = {"owner_id": {"$ne": None}}
        following = {**live, "_id": {"$gt": after}} if after is not None else live
        found = self._tasks.find(following, LIST_PROJECTION).sort("_id", ASCENDING).skip(skip).limit(limit)
        return list(found), self._tasks.count_documents(live)

    def overdue_today(self, owner_id: str, now: datetime) -> int:
        """How many of the owner's open tasks are due on ``now``'s UTC day before ``now``."""
        start, _ = counts.day_bounds(now)
        return self._tasks.count_documents(
            {"owner_id": owner_id, "status": {"$in": OPEN_STATUSES}, "due_date": {"$gte": start, "$lt": now}}
        )

    def completed_on_day_since(self, owner_id: str, since: datetime) -> int:
        """How many of the owner's tasks were completed on ``since``'s UTC day at or after ``since``."""
        _, end = counts.day_bounds(since)
        return self._tasks.count_documents({"owner_id": owner_id, "completed_at": {"$gte": since, "$lt": end}})


class OwnerBusy(ServiceUnavailable):
    """Another change of the owner's counters stayed pending for longer than a request waits (503)."""

    def __init__(self) -> None:
        super().__init__("Another change of your tasks is in progress; retry shortly.", headers={"Retry-After": "1"})


class _Turn:
    """One key's lock, how many callers hold or await it, and when its holder took it (between
    holders: when the last one let go, so a holder that has just taken it is never seen as old)."""

    __slots__ = ("callers", "lock", "taken_at")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.callers = 0
        self.taken_at = 0.0


class _Turns:
    """Process-local locks by key (threads, or greenlets under gevent's patching), each kept only
    while some caller holds or awaits it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._turns: dict[str, _Turn] = {}

    @contextmanager
    def hold(self, key: str, lease: float) -> Iterator[None]:
        """Hold ``key``'s lock for the block, waiting for it only while its holder has held it for
        less than ``lease`` seconds; past that, run the block without it."""
        held = False
        with self._guard:
            turn = self._turns.setdefault(key, _Turn())
            turn.callers += 1
        try:
            while True:
                with self._guard:
                    remaining = turn.taken_at + lease - time.monotonic() if turn.lock.locked() else lease
                if remaining <= 0:
                    break  # the holder outlived its lease: go on without the turn
                if turn.lock.acquire(timeout=remaining):
                    held = True
                    with self._guard:
                        turn.taken_at = time.monotonic()
                    break
            yield
        finally:
            if held:
                with self._guard:
                    turn.taken_at = time.monotonic()
                turn.lock.release()
            with self._guard:
                turn.callers -= 1
                if not turn.callers:
                    del self._turns[key]


class CountStore:
    """Each owner's task counters (``task_counts``) and the claim that serializes their changes.

    Args:
        db: the service's database, resolved per call.
        lease_seconds: how long a claim outlives a process that died holding it, so how long a
            SIGKILL mid-write holds up the owner's next counted change. Far longer than a write
            takes (POST p99 0.3 s at 8 clients on a million tasks, docs/benchmarks.md B7), but
            not required to outlast a request: a live request slower than its lease is fenced off
            when its claim is settled and retries (see "Why counters" above).
        wait_seconds: how long :meth:`claim` waits for another pending change before giving up;
            longer than the lease, so a change queued behind a dead holder's claim settles it.
    """

    def __init__(self, db: Callable[[], Database], *, lease_seconds: float = 3.0, wait_seconds: float = 5.0) -> None:
        self._db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.wait_seconds = wait_seconds
        self._turns = _Turns()

    @contextmanager
    def turn(self, owner_id: str) -> Iterator[None]:
        """Wait until no other counted change of the owner is in flight in this process; hold that
        turn for the block (a claim, its write and its finish).

        Concurrent requests of one owner then claim one after another instead of each polling the
        database (a refused claim costs two round trips and delays the holder's). A turn is waited
        for only while its holder is within the lease: past it, the block runs without the turn
        and the claim is tried at once, so a change stalled in this process is settled as one of a
        dead process would be, and delays no later change.
        """
        with self._turns.hold(owner_id, self.lease.total_seconds()):
            yield

    @property
    def _counts(self):  # noqa: ANN202
        return self._db()[COUNTS]

    def get(self, owner_id: str) -> dict[str, Any] | None:
        return self._counts.find_one({"_id": owner_id})

    def claim(
        self,
        owner_id: str,
        intent: Mapping[str, Any],
        now: datetime,
        settle: Callable[[dict[str, Any]], None],
        *,
        new_task_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Record ``intent`` as the owner's pending change (step 1), waiting while another is
        pending and calling ``settle(counters)`` on one whose lease has passed.

        Args:
            intent: ``{id, task_id, kind, delta}`` (``kind``: ``create``, ``change`` or ``delete``;
                ``delta`` None: a new task's contribution, read from the task when settling), for a
                change or delete also ``version`` and ``intent``, what its write is conditional on;
                its lease is added here.
            now: the current time (UTC), for the lease; a pending change's lease is compared with
                it plus the time waited so far.
            new_task_at: for a new task: its creation time; the claim also takes the next
                ``seq`` and keeps the latest ``last_created_at``.

        Returns:
            the counters before the claim (``{"_id": owner_id}`` for an owner without any).

        Raises:
            OwnerBusy: another change stayed pending for ``wait_seconds``.
        """
        update: dict[str, Any] = {"$set": {"pending": {**intent, "lease_until": now + self.lease}}}
        if new_task_at is not None:
            update |= {"$inc": {"next_seq": 1}, "$max": {"last_created_at": new_task_at}}
        backoff = Backoff(self.wait_seconds)
        started = time.monotonic()
        while True:
            try:
                before = self._counts.find_one_and_update(
                    {"_id": owner_id, "pending": None}, update, upsert=True, return_document=ReturnDocument.BEFORE
                )
                return before if before is not None else {"_id": owner_id}
            except DuplicateKeyError:
                pass  # a change is pending
            counters = self.get(owner_id)
            waited = timedelta(seconds=time.monotonic() - started)
            if counters is not None and counters.get("pending") and counters["pending"]["lease_until"] <= now + waited:
                settle(counters)
                continue
            if not backoff.wait():
                raise OwnerBusy()

    def finish(self, owner_id: str, intent_id: str, operators: Mapping[str, Any]) -> bool:
        """Apply a change's counter ``operators`` (see :func:`.counts.apply`) and clear its
        ``pending``, if it is still the pending one (step 3, or settling); True if it was."""
        update = {key: dict(value) for key, value in operators.items()}
        update.setdefault("$set", {})["pending"] = None
        return self._counts.update_one({"_id": owner_id, "pending.id": intent_id}, update).matched_count == 1

    def page(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Every owner's counters in owner id order, and how many owners there are (from the
        collection's metadata, which MongoDB keeps without scanning)."""
        found = self._counts.find({}).sort("_id", ASCENDING).skip(skip).limit(limit)
        return list(found), self._counts.estimated_document_count()
