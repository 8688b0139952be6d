"""What the tasks service does: each owner's tasks and their statistics (DESIGN §4 tasks),
independent of HTTP.

Raises the typed problems of :mod:`.errors`. Every write of a task goes through the outbox with
its ``task.*`` events and keeps the owner's counters exact (the protocol is described in
:mod:`.store`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from . import counts
from .errors import TaskNotFound, TaskVersionMismatch
from .events import TaskEvents
from .schemas import TaskCreate, TaskListQuery, TaskStats, etag
from .store import CountStore, TaskStore, list_filter, object_id

CHANGEABLE = ("title", "description", "status", "priority", "due_date", "tags")
"""The fields a client may change, in the order ``task.updated``'s ``changed`` lists them."""


def now() -> datetime:
    """The current time in UTC, truncated to milliseconds as MongoDB stores it."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def if_match_allows(if_match: str | None, version: int) -> bool:
    """Whether an ``If-Match`` field value lets a change of a task at ``version`` proceed.

    Strong comparison (RFC 9110 §13.1.1): ``*`` or a list holding exactly ``"<version>"``; a weak
    tag never matches. No header (or an empty one) sets no precondition.
    """
    if if_match is None or not if_match.strip():
        return True
    tags = {tag.strip() for tag in if_match.split(",")}
    return "*" in tags or etag(version) in tags


def new_task(owner_id: str, body: TaskCreate, created_at: datetime, seq: int) -> dict[str, Any]:
    """A new task as stored (before its helper fields): ``body``'s fields, owned by ``owner_id``,
    created at ``created_at`` (UTC, milliseconds) as the owner's ``seq``-th task, at version 1."""
    return {
        "_id": ObjectId(),
        "owner_id": owner_id,
        **body.model_dump(),
        "created_at": created_at,
        "updated_at": created_at,
        "completed_at": created_at if body.status == "done" else None,
        "version": 1,
        "seq": seq,
    }


class Tasks:
    """The tasks domain over its stores.

    Args:
        tasks, counts: the stores (see :mod:`.store`).
        events: builds the ``task.*`` events.
        clock: the current time (UTC, milliseconds); tests move it.
    """

    def __init__(self, tasks: TaskStore, counts: CountStore, events: TaskEvents, clock: Callable[[], datetime] = now):
        self.tasks = tasks
        self.counts = counts
        self.events = events
        self.clock = clock

    # -- one task ----------------------------------------------------------------------------

    def get(self, owner_id: str, task_id: str) -> dict[str, Any]:
        """The owner's task, or :class:`TaskNotFound` (also for a malformed id or another's task)."""
        key = object_id(task_id)
        task = None if key is None else self.tasks.find(owner_id, key)
        if task is None:
            raise TaskNotFound()
        return task

    def create(self, owner_id: str, body: TaskCreate) -> dict[str, Any]:
        """Create a task owned by (and on behalf of) ``owner_id``; ``task.created`` (and
        ``task.completed`` when it is created done)."""
        with self.counts.lock(owner_id):
            counters = self._settled(owner_id)
            moment = self.clock()
            # Creation order (seq) and created_at agree even if clocks of two processes differ.
            created_at = max(moment, counters.get("last_created_at") or moment)
            seq = counters.get("next_seq", 0)
            task = new_task(owner_id, body, created_at, seq)
            events = [self.events.created(task, owner_id)]
            if body.status == "done":
                events.append(self.events.completed(task, owner_id))
            self._write(
                owner_id, counters, task["_id"], 1, None, task,
                lambda: self.tasks.insert(task, events),
                extra={"next_seq": seq + 1, "last_created_at": created_at},
            )
        return task

    def update(self, owner_id: str, task_id: str, changes: Mapping[str, Any], if_match: str | None) -> dict[str, Any]:
        """Apply ``changes`` to the task's latest state; ``task.updated`` with the changed field
        names, then ``task.completed`` when its status became ``done``. Changing nothing writes
        nothing.

        Raises:
            TaskNotFound: no such task of this owner.
            TaskVersionMismatch: ``if_match`` does not name the current version.
        """
        with self._current(owner_id, task_id, if_match) as before:
            key = before["_id"]
            after = {**before, **changes}
            changed = [field for field in CHANGEABLE if after[field] != before[field]]
            if not changed:
                return before
            moment = self.clock()
            if after["status"] != before["status"] and "done" in (after["status"], before["status"]):
                after["completed_at"] = moment if after["status"] == "done" else None
                changed.append("completed_at")
            after.update(updated_at=moment, version=before["version"] + 1)
            events = [self.events.updated(after, changed, owner_id)]
            if after["status"] == "done" and before["status"] != "done":
                events.append(self.events.completed(after, owner_id))
            counters = self._settled(owner_id)
            self._write(owner_id, counters, key, after["version"], before, after,
                        lambda: self.tasks.update(before, after, events))
        return after

    def delete(self, owner_id: str, task_id: str, if_match: str | None) -> None:
        """Delete the task; ``task.deleted`` with its last state.

        Raises:
            TaskNotFound: no such task of this owner.
            TaskVersionMismatch: ``if_match`` does not name the current version.
        """
        with self._current(owner_id, task_id, if_match) as before:
            key = before["_id"]
            version = before["version"] + 1
            event = self.events.deleted({**before, "version": version}, owner_id)
            counters = self._settled(owner_id)
            self._write(owner_id, counters, key, version, before, None,
                        lambda: self.tasks.tombstone(before, version, [event]), deleting=True)

    @contextmanager
    def _current(self, owner_id: str, task_id: str, if_match: str | None) -> Iterator[dict[str, Any]]:
        """The task's latest state, held under the owner's and the task's locks for a change.

        Raises:
            TaskNotFound: no such task of this owner.
            TaskVersionMismatch: ``if_match`` does not name the current version.
        """
        key = self.get(owner_id, task_id)["_id"]
        with self.counts.lock(owner_id), self.tasks.lock(key):
            current = self.get(owner_id, task_id)
            if not if_match_allows(if_match, current["version"]):
                raise TaskVersionMismatch(etag(current["version"]))
            yield current

    # -- the owner's counters ----------------------------------------------------------------

    def _write(
        self,
        owner_id: str,
        counters: Mapping[str, Any],
        task_id: ObjectId,
        version: int,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        write: Callable[[], None],
        *,
        deleting: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Make one task write with its counter change: intent, write, apply (see :mod:`.store`).

        Under the owner's lock, with ``counters`` settled. If ``write`` fails the intent stays and
        is dropped by whoever settles it next (the task never reached ``version``).
        """
        change = counts.delta(before, after)
        if change or extra:
            delta = [{"path": path, "amount": amount} for path, amount in change.items()]
            intent = {"task_id": task_id, "version": version, "deleting": deleting, "delta": delta}
            self.counts.begin(owner_id, intent, extra)
        write()
        if change or extra:
            _, operators = counts.apply(counters, change, self.clock())
            self.counts.finish(owner_id, operators)

    def _settled(self, owner_id: str) -> dict[str, Any]:
        """The owner's counters with any leftover change settled. Under the owner's lock."""
        counters = self.counts.get(owner_id)
        if counters is None:
            return {"_id": owner_id, **counts.empty()}
        pending = counters.get("pending")
        if not pending:
            return counters
        stored = self.tasks.version(pending["task_id"])
        reached = stored >= pending["version"] if stored is not None else pending["deleting"]
        change = {entry["path"]: entry["amount"] for entry in pending["delta"]} if reached else {}
        settled, operators = counts.apply(counters, change, self.clock())
        self.counts.finish(owner_id, operators)
        return {**counters, **settled, "pending": None}

    def _current_counters(self, owner_id: str) -> dict[str, Any] | None:
        """The owner's counters, settled first if a change is pending (None: never had a task)."""
        counters = self.counts.get(owner_id)
        if counters is not None and counters.get("pending"):
            with self.counts.lock(owner_id):
                counters = self._settled(owner_id)
        return counters

    # -- lists and statistics ----------------------------------------------------------------

    def list(self, owner_id: str, query: TaskListQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of the owner's tasks and how many match (see :class:`.schemas.TaskListQuery`)."""
        filters = query.model_dump(exclude={"page", "limit", "sort"}, exclude_none=True)
        if not filters and query.sort.lstrip("-") == "created_at":
            counters = self.counts.get(owner_id)
            if counters is None:
                return [], 0
            if not counters.get("pending"):
                return self._page_from_buckets(owner_id, counters, query)
        conditions = list_filter(owner_id, query, self.clock())
        return self.tasks.page(conditions, query.sort, query.skip, query.limit), self.tasks.count(conditions)

    def _page_from_buckets(
        self, owner_id: str, counters: Mapping[str, Any], query: TaskListQuery
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the unfiltered list in creation order, read from the fewest buckets."""
        descending = query.sort.startswith("-")
        total = counters.get("total", 0)
        start, stop = query.skip, min(query.skip + query.limit, total)
        if start >= stop:
            return [], total
        plans = []
        for bucketing in ("a", "b"):
            sizes = {int(name[1:]): size for name, size in counters.get("pages", {}).get(bucketing, {}).items()}
            chosen, first_rank, seen = [], 0, 0
            for bucket in sorted(sizes, reverse=descending):
                if seen + sizes[bucket] > start:
                    if not chosen:
                        first_rank = seen
                    chosen.append(bucket)
                seen += sizes[bucket]
                if seen >= stop:
                    break
            plans.append((len(chosen), bucketing, chosen, first_rank))
        _, bucketing, chosen, first_rank = min(plans)
        items = [task for bucket in chosen for task in self.tasks.bucket(owner_id, bucketing, bucket, descending)]
        offset = start - first_rank
        return items[offset : offset + stop - start], total

    def stats(self, owner_id: str) -> TaskStats:
        """The owner's statistics (DESIGN §4), from the counters plus the two partial days."""
        counters = self._current_counters(owner_id) or counts.empty()
        moment = self.clock()
        return counts.stats(
            counters,
            moment,
            self.tasks.open_due_on(owner_id, counts.day(moment)),
            self.tasks.completed_on(owner_id, counts.day(moment - counts.COMPLETED_WINDOW)),
        )

    def every_task(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Every live task of every owner, in id order, for the admin service's backfill."""
        return self.tasks.every(skip, limit)

    def owner_counts(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Every owner's counters (settled), in owner id order, for the admin service's backfill."""
        found, total = self.counts.page(skip, limit)
        return [self._current_counters(counters["_id"]) or counters for counters in found], total
