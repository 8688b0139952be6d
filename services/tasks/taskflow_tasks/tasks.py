"""What the tasks service does: each owner's tasks and their statistics (DESIGN §4 tasks),
independent of HTTP.

Raises the typed problems of :mod:`.errors`. Every write of a task goes through the outbox with
its ``task.*`` events, conditional on the version it was computed from, and keeps the owner's
counters exact (claim, write, finish: the protocol is described in :mod:`.store`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from . import counts
from .errors import TaskNotFound, TaskVersionMismatch
from .events import TaskEvents
from .schemas import TaskCreate, TaskListQuery, TaskStats, etag
from .store import INTENT_FIELD, CountStore, TaskIdTaken, TaskStore, VersionConflict, list_filter, object_id

log = logging.getLogger(__name__)

CHANGEABLE = ("title", "description", "status", "priority", "due_date", "tags")
"""The fields a client may change, in the order ``task.updated``'s ``changed`` lists them."""
MAX_WRITE_ATTEMPTS = 20
"""Reads and conditional writes of one task before a change gives up with 409 (each failed
attempt means another change of that task succeeded)."""


def now() -> datetime:
    """The current time in UTC, truncated to milliseconds as MongoDB stores it."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def if_match_allows(if_match: str | None, version: int) -> bool:
    """Whether an ``If-Match`` field value lets a change of a task at ``version`` proceed:
    ``*``, or a list holding ``"<version>"``. No header (or an empty one) sets no precondition.

    The tag names the task's version, whatever the bytes of its representation, so ``W/"<version>"``
    matches too: a compressing proxy (nginx's and Kong's gzip) turns the strong tag the service
    sent into that weak one, and a client that sends back the ETag it got must not be refused for
    it. RFC 9110 §13.1.1 compares If-Match strongly because a weak tag may cover several
    representations; here every representation of a version is that version.
    """
    if if_match is None or not if_match.strip():
        return True
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    return "*" in tags or etag(version) in tags


def new_task(task_id: ObjectId, owner_id: str, body: TaskCreate, created_at: datetime, seq: int) -> dict[str, Any]:
    """A new task ``task_id`` as stored (before its helper fields): ``body``'s fields, owned by
    ``owner_id``, created at ``created_at`` (UTC, milliseconds) as the owner's ``seq``-th task, at version 1."""
    return {
        "_id": task_id,
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

    def create(self, owner_id: str, body: TaskCreate, *, task_id: ObjectId | None = None) -> dict[str, Any]:
        """Create a task owned by (and on behalf of) ``owner_id``; ``task.created`` (and
        ``task.completed`` when it is created done). ``task_id``: the id to create it under (an
        idempotent request's, see :mod:`.idempotency`) instead of a new one.

        Raises:
            TaskIdTaken: ``task_id`` is taken (nothing was written).
            VersionConflict: the claim kept outliving its lease under ``MAX_WRITE_ATTEMPTS`` attempts.
        """
        given = task_id
        for _ in range(MAX_WRITE_ATTEMPTS):
            task_id = given or ObjectId()
            intent = {"id": uuid.uuid4().hex, "task_id": task_id, "kind": "create", "delta": None}
            with self.counts.turn(owner_id):
                moment = self.clock()
                counters = self.counts.claim(owner_id, intent, moment, self._settle, new_task_at=moment)
                # Creation order (seq) and created_at agree even if clocks of two processes differ.
                created_at = max(moment, counters.get("last_created_at") or moment)
                task = new_task(task_id, owner_id, body, created_at, counters.get("next_seq", 0))
                events = [self.events.created(task, owner_id)]
                if body.status == "done":
                    events.append(self.events.completed(task, owner_id))
                try:
                    self._write(owner_id, counters, intent, counts.delta(None, task),
                                lambda: self.tasks.insert(task, events, intent["id"]))
                except VersionConflict:
                    if given is not None:
                        raise TaskIdTaken() from None
                    continue  # its id was fenced off: this request outlived its claim's lease
            return task
        raise VersionConflict()

    def update(self, owner_id: str, task_id: str, changes: Mapping[str, Any], if_match: str | None) -> dict[str, Any]:
        """Apply ``changes`` to the task's latest state; ``task.updated`` with the changed field
        names, then ``task.completed`` when its status became ``done``. Changing nothing writes
        nothing.

        Raises:
            TaskNotFound: no such task of this owner.
            TaskVersionMismatch: ``if_match`` does not name the current version.
            VersionConflict: the task kept changing under ``MAX_WRITE_ATTEMPTS`` attempts.
        """
        for _ in range(MAX_WRITE_ATTEMPTS):
            before = self._current(owner_id, task_id, if_match)
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
            try:
                self._change(owner_id, before, after, lambda intent_id: self.tasks.update(before, after, events, intent_id))
            except VersionConflict:
                continue
            return after
        raise VersionConflict()

    def delete(self, owner_id: str, task_id: str, if_match: str | None) -> None:
        """Delete the task; ``task.deleted`` with its last state.

        Raises:
            TaskNotFound: no such task of this owner.
            TaskVersionMismatch: ``if_match`` does not name the current version.
            VersionConflict: the task kept changing under ``MAX_WRITE_ATTEMPTS`` attempts.
        """
        for _ in range(MAX_WRITE_ATTEMPTS):
            before = self._current(owner_id, task_id, if_match)
            version = before["version"] + 1
            event = self.events.deleted({**before, "version": version}, owner_id)
            try:
                self._change(owner_id, before, None, lambda intent_id: self.tasks.tombstone(before, version, [event], intent_id))
            except VersionConflict:
                continue
            return
        raise VersionConflict()

    def _current(self, owner_id: str, task_id: str, if_match: str | None) -> dict[str, Any]:
        """The task's latest state, checked against ``if_match``.

        Raises:
            TaskNotFound: no such task of this owner.
            TaskVersionMismatch: ``if_match`` does not name the current version.
        """
        current = self.get(owner_id, task_id)
        if not if_match_allows(if_match, current["version"]):
            raise TaskVersionMismatch(etag(current["version"]))
        return current

    # -- the owner's counters ----------------------------------------------------------------

    def _change(
        self,
        owner_id: str,
        before: Mapping[str, Any],
        after: Mapping[str, Any] | None,
        write: Callable[[str | None], None],
    ) -> None:
        """Write a change of an existing task (``after`` None: its deletion), with its counters;
        ``write(intent_id)`` makes the task write (``intent_id`` None: no counter changes).

        Raises:
            VersionConflict: the task is no longer at ``before``'s version; nothing was changed.
        """
        change = counts.delta(before, after)
        if not change:
            write(None)
            return
        intent = {
            "id": uuid.uuid4().hex,
            "task_id": before["_id"],
            "kind": "change" if after is not None else "delete",
            "delta": [{"path": path, "amount": amount} for path, amount in change.items()],
            "version": before["version"],  # what the write is conditional on, for fencing it off
            "intent": before.get(INTENT_FIELD),
        }
        with self.counts.turn(owner_id):
            counters = self.counts.claim(owner_id, intent, self.clock(), self._settle)
            self._write(owner_id, counters, intent, change, lambda: write(intent["id"]))

    def _write(
        self, owner_id: str, counters: Mapping[str, Any], intent: Mapping[str, Any], change: counts.Delta,
        write: Callable[[], None],
    ) -> None:
        """Steps 2 and 3 of a claimed change (see :mod:`.store`): the write, then the counters.

        If ``write`` raises, the intent is settled at once (the task decides whether it
        happened) and the error propagates; should settling fail too, the claim's lease ends it.
        """
        try:
            write()
        except VersionConflict:
            self.counts.finish(owner_id, intent["id"], {})  # matched nothing: nothing happened
            raise
        except Exception:
            try:
                self._settle({**counters, "pending": intent})
            except Exception:  # noqa: BLE001 (the original error is the one to report)
                pass
            raise
        self._finish(counters, intent["id"], change)

    def _finish(self, counters: Mapping[str, Any], intent_id: str, change: counts.Delta | None) -> None:
        """Apply ``change`` to ``counters`` and clear intent ``intent_id`` (step 3, or settling);
        ``change`` None, or a counter that would go negative, recounts the owner's tasks instead."""
        moment = self.clock()
        if change is not None:
            try:
                _, operators = counts.apply(counters, change, moment)
                self.counts.finish(counters["_id"], intent_id, operators)
                return
            except ValueError as error:
                log.error("task counters of %s are off (%s); recounting them", counters["_id"], error)
        recounted = counts.recount(self.tasks.counted(counters["_id"]), moment)
        self.counts.finish(counters["_id"], intent_id, {"$set": recounted})

    def _settle(self, counters: Mapping[str, Any]) -> None:
        """Settle the pending change of ``counters`` (left by a process that died or stalled, or by
        a write that failed): fence its task write off, then apply its delta if that write
        happened, drop it if not, or recount when the task is gone (see :mod:`.store`)."""
        pending = counters["pending"]
        task_id, intent_id = pending["task_id"], pending["id"]
        if pending.get("kind") == "create":
            fenced = self.tasks.fence_new(task_id, intent_id, self.clock())
        else:
            fenced = self.tasks.fence_change(task_id, pending.get("version"), pending.get("intent"), intent_id)
        stored = None if fenced else self.tasks.stored(task_id)
        change: counts.Delta | None
        if fenced or (stored is not None and stored.get(INTENT_FIELD) != intent_id):
            change = {}  # the write did not happen, and now never will
        elif stored is None:
            change = None  # gone (a purged tombstone): whose deletion it was cannot be told
        elif pending["delta"] is None:  # a new task: what it adds is read from it
            change = counts.delta(None, stored)
        else:
            change = {entry["path"]: entry["amount"] for entry in pending["delta"]}
        self._finish(counters, intent_id, change)

    def _current_counters(self, owner_id: str) -> dict[str, Any] | None:
        """The owner's committed counters, a pending change whose lease passed settled first
        (None: never had a task). A live pending change is not counted yet."""
        counters = self.counts.get(owner_id)
        pending = counters.get("pending") if counters is not None else None
        if pending and pending["lease_until"] <= self.clock():
            self._settle(counters)
            counters = self.counts.get(owner_id)
        return counters

    # -- lists and statistics ----------------------------------------------------------------

    def list(self, owner_id: str, query: TaskListQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of the owner's tasks and how many match (see :class:`.schemas.TaskListQuery`)."""
        conditions = list_filter(owner_id, query, self.clock())
        page = self.tasks.page(conditions, query.sort, query.skip, query.limit)
        return page, self._total(owner_id, query, conditions)

    def _total(self, owner_id: str, query: TaskListQuery, conditions: Mapping[str, Any]) -> int:
        """How many of the owner's tasks match: from the counters when they count exactly that
        (no filter, or one status or priority) and no change is in flight, else counted."""
        filters = query.model_dump(exclude={"page", "limit", "sort"}, exclude_none=True)
        if len(filters) <= 1 and set(filters) <= {"status", "priority"}:
            counters = self.counts.get(owner_id)
            if counters is None:
                return 0
            if not counters.get("pending"):
                if not filters:
                    return counters.get("total", 0)
                ((field, value),) = filters.items()
                return counters.get(f"by_{field}", {}).get(value, 0)
        return self.tasks.count(conditions)

    def stats(self, owner_id: str) -> TaskStats:
        """The owner's statistics (DESIGN §4), from the counters plus the two partial days."""
        counters = self._current_counters(owner_id) or counts.empty()
        moment = self.clock()
        return counts.stats(
            counters,
            moment,
            self.tasks.overdue_today(owner_id, moment),
            self.tasks.completed_on_day_since(owner_id, moment - counts.COMPLETED_WINDOW),
        )

    def every_task(self, after: str | None, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Live tasks of every owner whose id is after ``after`` (a task id, or None: from the
        first), in id order, for the admin service's backfill; and how many live tasks there are."""
        return self.tasks.every(ObjectId(after) if after else None, skip, limit)

    def owner_counts(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Every owner's counters (settled), in owner id order, for the admin service's backfill."""
        found, total = self.counts.page(skip, limit)
        return [self._current_counters(counters["_id"]) or counters for counters in found], total
