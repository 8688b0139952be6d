"""Request and response bodies of the notify service; they validate requests and produce the
OpenAPI document (DESIGN §4 notify)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, Field
from taskflow_common.pagination import PageQuery

from .messages import Kind


class NotificationQuery(PageQuery):
    """A page of the caller's notifications, newest first; ``unread=true`` keeps only unread ones."""

    unread: bool = Field(default=False, description="true: only notifications not yet read.")


class Notification(BaseModel):
    """One inbox item. ``subject_id`` is what it is about: a task (reminders) or the user;
    ``due_date`` is a reminder's due time (its body gives it in UTC), null for other kinds and for
    reminders stored before it was kept."""

    id: str
    kind: Kind
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None
    subject_id: str
    due_date: datetime | None = Field(
        default=None, description="A reminder's due time (the body gives it in UTC, for email); null for other kinds."
    )

    @classmethod
    def from_document(cls, notification: dict[str, Any]) -> Self:
        return cls.model_validate({**notification, "id": notification["_id"]})
