"""Every MongoDB query of the admin service, with the indexes they need declared in one place.

Admin owns no users or tasks; it keeps read models of them, fed by events (see :mod:`.events`):
``users`` (the newest snapshot of each user, plus ``last_login_at``), ``tasks`` (each task's
owner, status and due date, and whether it was deleted) and ``audit`` (one entry per event,
keeping the event's data so the read models can be rebuilt from it). ``meta`` remembers whether
the users were backfilled from auth.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from taskflow_common.events.consumer import PARKED, PROCESSED
from taskflow_common.mongo import Indexes
from taskflow_common.projections import apply_if_newer

USERS = "users"
TASKS = "tasks"
AUDIT = "audit"
META = "meta"
STATUSES = ("todo", "in_progress", "done")

INDEXES = (
    Indexes(USERS, (
        IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("role", ASCENDING), ("active", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("active", ASCENDING), ("created_at", DESCENDING)]),
    )),
    Indexes(TASKS, (
        IndexModel([("owner_id", ASCENDING), ("deleted", ASCENDING)]),
        IndexModel([("deleted", ASCENDING), ("status", ASCENDING), ("due_date", ASCENDING)]),
    )),
    Indexes(AUDIT, (
        IndexModel([("time", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("type", ASCENDING), ("time", DESCENDING)]),
        IndexModel([("actor_id", ASCENDING), ("time", DESCENDING)]),
        IndexModel([("subject_id", ASCENDING), ("time", DESCENDING)]),
    )),
)


class ReadModels:
    """The admin service's read models and audit log, on the database ``db()`` returns."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    # -- users ---------------------------------------------------------------------------------

    def apply_user(self, snapshot: dict[str, Any]) -> None:
        """Keep the newest snapshot of a user, and the latest login time whatever the version."""
        users = self._db()[USERS]
        fields = {key: snapshot[key] for key in ("email", "name", "role", "active", "created_at")}
        apply_if_newer(users, snapshot["id"], snapshot["version"], fields)
        if snapshot.get("last_login_at") is not None:
            users.update_one(
                {"_id": snapshot["id"], "$or": [{"last_login_at": None}, {"last_login_at": {"$lt": snapshot["last_login_at"]}}]},
                {"$set": {"last_login_at": snapshot["last_login_at"]}},
            )

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self._db()[USERS].find_one({"_id": user_id})

    def users(self, *, q: str | None, role: str | None, active: bool | None, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Users newest first, filtered; and how many match."""
        query: dict[str, Any] = {}
        if role is not None:
            query["role"] = role
        if active is not None:
            query["active"] = active
        if q is not None:
            pattern = {"$regex": re.escape(q), "$options": "i"}
            query["$or"] = [{"email": pattern}, {"name": pattern}]
        users = self._db()[USERS]
        found = users.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).skip(skip).limit(limit)
        return list(found), users.count_documents(query)

    def task_counts(self, owner_ids: list[str]) -> dict[str, int]:
        """Live (not deleted) tasks per owner, for the given owners."""
        if not owner_ids:
            return {}
        grouped = self._db()[TASKS].aggregate([
            {"$match": {"owner_id": {"$in": owner_ids}, "deleted": False}},
            {"$group": {"_id": "$owner_id", "count": {"$sum": 1}}},
        ])
        return {row["_id"]: row["count"] for row in grouped}

    # -- tasks ---------------------------------------------------------------------------------

    def apply_task(self, snapshot: dict[str, Any], *, deleted: bool) -> None:
        """Keep the newest state of a task; a deletion is final whatever the versions."""
        tasks = self._db()[TASKS]
        fields = {"owner_id": snapshot["owner_id"], "status": snapshot["status"], "due_date": snapshot["due_date"]}
        if not deleted:
            apply_if_newer(tasks, snapshot["id"], snapshot["version"], {**fields, "deleted": False})
            return
        tasks.update_one({"_id": snapshot["id"]}, {"$set": {**fields, "deleted": True}, "$max": {"version": snapshot["version"]}}, upsert=True)

    # -- statistics ----------------------------------------------------------------------------

    def stats(self, now: datetime) -> dict[str, Any]:
        db = self._db()
        users, tasks = db[USERS], db[TASKS]
        by_status = {row["_id"]: row["count"] for row in tasks.aggregate([
            {"$match": {"deleted": False}},
            {"$group": {"_id": "$status", "count": {"$sum": 1}}},
        ])}
        return {
            "users": {
                "total": users.count_documents({}),
                "active": users.count_documents({"active": True}),
                "admins": users.count_documents({"role": "admin"}),
            },
            "tasks": {
                "total": sum(by_status.values()),
                "by_status": {status: by_status.get(status, 0) for status in STATUSES},
                "overdue": tasks.count_documents(
                    {"deleted": False, "status": {"$in": ["todo", "in_progress"]}, "due_date": {"$lt": now}}
                ),
            },
            "events": {
                "processed": db[PROCESSED].count_documents({}),
                "dead_lettered": db[PARKED].count_documents({}),
            },
        }

    # -- audit ---------------------------------------------------------------------------------

    def record(self, entry: dict[str, Any]) -> bool:
        """Insert an audit entry keyed by its event id; False when it was already there."""
        try:
            self._db()[AUDIT].insert_one(entry)
            return True
        except DuplicateKeyError:
            return False

    def audit(self, query: dict[str, Any], *, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Audit entries newest first, filtered; and how many match."""
        audit = self._db()[AUDIT]
        found = audit.find(query, {"data": 0}).sort([("time", DESCENDING), ("_id", DESCENDING)]).skip(skip).limit(limit)
        return list(found), audit.count_documents(query)

    def recorded_events(self) -> Iterator[dict[str, Any]]:
        """Every audit entry with its data, oldest first (to rebuild the read models)."""
        return self._db()[AUDIT].find({}).sort([("time", ASCENDING), ("_id", ASCENDING)])

    # -- backfill and rebuild ------------------------------------------------------------------

    def backfilled(self) -> bool:
        return self._db()[META].find_one({"_id": "users-backfill"}) is not None

    def mark_backfilled(self) -> None:
        self._db()[META].update_one({"_id": "users-backfill"}, {"$set": {"at": datetime.now(UTC)}}, upsert=True)

    def clear(self) -> None:
        """Drop the read models (not the audit log) and the backfill mark."""
        db = self._db()
        for name in (USERS, TASKS, META):
            db.drop_collection(name)
