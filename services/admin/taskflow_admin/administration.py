"""What the admin service does (DESIGN §4 admin): read models for operators, and user changes
applied by auth. Independent of HTTP; raises problem details."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from taskflow_common.problems import NotFound

from .events import Projections, TaskSnapshot, UserSnapshot
from .store import ReadModels
from .upstream import Upstreams

log = logging.getLogger(__name__)


class Administration:
    """Operators' view of the system over admin's read models, and changes through auth."""

    def __init__(self, read_models: ReadModels, projections: Projections, upstreams: Upstreams) -> None:
        self.read_models = read_models
        self.projections = projections
        self.upstreams = upstreams

    def backfill(self, authorization: str) -> None:
        """Fill empty read models from auth's users and tasks' tasks, once (with the caller's token).

        Users and tasks that existed before admin was running have no events here; their snapshots
        come from the services that own them. Snapshots are version-guarded, so events arriving
        meanwhile are never undone and never counted twice, and two admins' first requests
        backfilling at once both apply the same snapshots to the same effect.
        """
        if self.read_models.backfilled():
            return
        for user in self.upstreams.users(authorization):
            self.read_models.apply_user(UserSnapshot.model_validate(user).model_dump())
        for page in self.upstreams.task_snapshot_pages(authorization):
            self.read_models.apply_live_tasks([TaskSnapshot.model_validate(task).model_dump() for task in page])
        self.read_models.mark_backfilled()
        log.info("read models backfilled from auth and tasks")

    def with_task_counts(self, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
        counts = self.read_models.task_counts([user["_id"] for user in users])
        return [
            {**user, "id": user["_id"], "last_login_at": user.get("last_login_at"), "task_count": counts.get(user["_id"], 0)}
            for user in users
        ]

    def users(self, **filters: Any) -> tuple[list[dict[str, Any]], int]:
        found, total = self.read_models.users(**filters)
        return self.with_task_counts(found), total

    def user(self, user_id: str) -> dict[str, Any]:
        """A user of the read model with their task count, or :class:`NotFound` (also for an id
        that is no ObjectId)."""
        found = self.read_models.user(str(ObjectId(user_id))) if ObjectId.is_valid(user_id) else None
        if found is None:
            raise NotFound("No such user.")
        return self.with_task_counts([found])[0]

    def change_user(self, user_id: str, change: dict[str, Any], authorization: str) -> dict[str, Any]:
        """Have auth apply ``change``; the read model takes auth's answer at once (the events
        that follow carry the same version and change nothing more).

        Raises:
            NotFound: ``user_id`` is no ObjectId (it never travels to auth), or auth knows no such user.
        """
        if not ObjectId.is_valid(user_id):
            raise NotFound("No such user.")
        record = self.upstreams.change_user(str(ObjectId(user_id)), change, authorization)
        self.read_models.apply_user(UserSnapshot.model_validate(record).model_dump())
        return self.user(record["id"])

    def stats(self) -> dict[str, Any]:
        return self.read_models.stats(datetime.now(UTC))

    def audit(self, *, type: str | None, actor_id: str | None, subject_id: str | None, since: datetime | None,
              skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {}
        for field, value in (("type", type), ("actor_id", actor_id), ("subject_id", subject_id)):
            if value is not None:
                query[field] = value
        if since is not None:
            query["time"] = {"$gte": since}
        entries, total = self.read_models.audit(query, skip=skip, limit=limit)
        return [{**entry, "id": entry.get("event_id", entry["_id"])} for entry in entries], total

    def rebuild(self) -> int:
        """Drop the read models and replay every recorded event into them; returns how many.

        The next admin request backfills users and tasks that predate the audit log.
        """
        self.read_models.clear()
        replayed = 0
        for entry in self.read_models.recorded_events():
            self.projections.replay(entry)
            replayed += 1
        return replayed
