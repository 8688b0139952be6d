"""Request and response bodies of the admin service (DESIGN §4 admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from taskflow_common.api import RequestBody, requires_one_of
from taskflow_common.pagination import PageQuery
from taskflow_common.timestamps import Timestamp

Role = Literal["user", "admin"]


class AdminUser(BaseModel):
    """A user as operators see it: the user plus last login and task count."""

    id: str
    email: str
    name: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None
    task_count: int


class UserQuery(PageQuery):
    """``q`` matches email or name (case-insensitive substring); ``role`` and ``active`` filter."""

    q: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    active: bool | None = None


class UserChange(RequestBody):
    """What an operator may change; auth applies it."""

    model_config = ConfigDict(json_schema_extra=requires_one_of("role", "active"))

    role: Role | None = Field(default=None, examples=["admin"])
    active: bool | None = Field(default=None, examples=[False])

    @model_validator(mode="after")
    def _something(self) -> UserChange:
        if self.role is None and self.active is None:
            raise ValueError("give role, active or both")
        return self


class UserCounts(BaseModel):
    total: int
    active: int
    admins: int


class StatusCounts(BaseModel):
    todo: int
    in_progress: int
    done: int


class TaskCounts(BaseModel):
    total: int
    by_status: StatusCounts
    overdue: int


class EventCounts(BaseModel):
    processed: int = Field(description="Events admin's consumers applied (within the de-duplication window).")
    dead_lettered: int = Field(
        description="Messages waiting in every service's parking queue (`<queue>.dlq`), at the broker's last count "
        "(at most 15 s old)."
    )


class SystemStats(BaseModel):
    """System statistics from admin's read models (DESIGN §4 admin)."""

    users: UserCounts
    tasks: TaskCounts
    events: EventCounts


class AuditEntry(BaseModel):
    """One domain event as the audit log records it; ``trace_id`` finds its trace in Jaeger."""

    id: str = Field(description="The event id.")
    time: datetime
    type: str
    actor_id: str | None
    subject_id: str
    summary: str
    trace_id: str | None


class AuditQuery(PageQuery):
    """Filters of the audit log; entries come newest first."""

    type: str | None = Field(default=None, min_length=1, max_length=100)
    actor_id: str | None = Field(default=None, min_length=1, max_length=100)
    subject_id: str | None = Field(default=None, min_length=1, max_length=100)
    since: Timestamp | None = Field(default=None, examples=["2026-01-01T00:00:00Z"])
