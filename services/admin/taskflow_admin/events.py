"""What the admin service consumes: every domain event, into its read models and audit log.

Admin emits no events. ``handle_<event>`` keeps the users and tasks read models (newest
snapshot wins, so order and duplicates do not matter) and records one audit entry per event
(keyed by the event id, or by source and id where another source's entry holds the id, so a
redelivery adds nothing). The audit entry keeps the event's data, which is what a rebuild replays.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from taskflow_common.events.envelope import Event

from .store import ReadModels

CATALOG = (
    "user.registered", "user.updated", "user.role_changed", "user.deactivated", "user.activated",
    "user.password_changed", "user.sessions_revoked", "user.email_verification_requested", "user.email_verified",
    "user.logged_in", "task.created", "task.updated", "task.completed", "task.deleted", "notification.sent",
)
"""Every event type of DESIGN §5 (docs/asyncapi.yaml); admin audits them all."""


class _Snapshot(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserSnapshot(_Snapshot):
    id: str
    email: str
    name: str
    role: str
    active: bool
    created_at: datetime
    last_login_at: datetime | None = None
    version: int


class TaskSnapshot(_Snapshot):
    id: str
    owner_id: str
    status: str
    due_date: datetime | None
    version: int


def summary(event: Event) -> str:
    """What happened, in a few words, for the audit log (never a secret)."""
    data = event.data
    summaries: dict[str, Callable[[], str]] = {
        "user.registered": lambda: f"registered {data.get('email')} as {data.get('role')}",
        "user.updated": lambda: f"changed {', '.join(data.get('changed', []))}",
        "user.role_changed": lambda: f"role changed from {data.get('previous_role')} to {data.get('role')}",
        "user.deactivated": lambda: "deactivated",
        "user.activated": lambda: "reactivated",
        "user.password_changed": lambda: "changed password",
        "user.sessions_revoked": lambda: "signed out everywhere",
        "user.email_verification_requested": lambda: "was sent a verification link",
        "user.email_verified": lambda: "verified the email address",
        "user.logged_in": lambda: "logged in",
        "task.created": lambda: f"created task ({data.get('status')}, {data.get('priority')})",
        "task.updated": lambda: f"changed {', '.join(data.get('changed', []))}",
        "task.completed": lambda: "completed task",
        "task.deleted": lambda: "deleted task",
        "notification.sent": lambda: f"sent {data.get('kind')} notification ({', '.join(data.get('channels', []))})",
    }
    return summaries.get(event.type, lambda: event.type)()


def trace_id(event: Event) -> str | None:
    """The trace id of the request that caused the event (W3C traceparent's second field)."""
    if event.traceparent and event.traceparent.count("-") == 3:
        return event.traceparent.split("-")[1]
    return None


class Projections:
    """The admin read models' event handlers."""

    def __init__(self, read_models: ReadModels) -> None:
        self.read_models = read_models

    def _audit(self, event: Event) -> None:
        actor_id = event.data.get("actor_id")  # a string, or a publisher's mistake that must not break the log's pages
        self.read_models.record({
            "_id": event.id,
            "source": event.source,
            "time": event.time,
            "type": event.type,
            "actor_id": actor_id if isinstance(actor_id, str) else None,
            "subject_id": event.subject,
            "summary": summary(event),
            "trace_id": trace_id(event),
            "data": event.data,
        })

    def handle_user_event(self, event: Event) -> None:
        """Any ``user.*``: the newest snapshot of the user, and an audit entry."""
        self.read_models.apply_user(UserSnapshot.model_validate(event.data).model_dump())
        self._audit(event)

    def handle_task_event(self, event: Event) -> None:
        """Any ``task.*``: the newest state of the task (deletion is final), and an audit entry."""
        snapshot = TaskSnapshot.model_validate(event.data).model_dump()
        self.read_models.apply_task(snapshot, deleted=event.type == "task.deleted")
        self._audit(event)

    def handle_notification_sent(self, event: Event) -> None:
        self._audit(event)

    def handler_for(self, event_type: str) -> Callable[[Event], None]:
        if event_type.startswith("user."):
            return self.handle_user_event
        if event_type.startswith("task."):
            return self.handle_task_event
        return self.handle_notification_sent

    @property
    def handlers(self) -> dict[str, Callable[[Event], None]]:
        """Event type → handler, for every type of the catalog."""
        return {event_type: self.handler_for(event_type) for event_type in CATALOG}

    def replay(self, entry: dict[str, Any]) -> None:
        """Apply one recorded audit entry to the read models again (rebuild)."""
        data = entry["data"]
        if entry["type"].startswith("user."):
            self.read_models.apply_user(UserSnapshot.model_validate(data).model_dump())
        elif entry["type"].startswith("task."):
            self.read_models.apply_task(TaskSnapshot.model_validate(data).model_dump(), deleted=entry["type"] == "task.deleted")
