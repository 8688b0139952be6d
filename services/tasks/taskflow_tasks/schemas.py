"""Request and response bodies of the tasks service (DESIGN §4 tasks); they validate requests and
produce the OpenAPI document. Unknown and read-only fields (``id``, ``owner_id``, ``version``,
timestamps) are 422, never honoured."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from taskflow_common.api import RequestBody
from taskflow_common.pagination import PageQuery
from taskflow_common.text import (
    PRINTABLE,
    PRINTABLE_MULTILINE,
    PRINTABLE_NOT_BLANK,
    printable,
    printable_multiline,
    printable_not_blank,
)
from taskflow_common.timestamps import Timestamp

Status = Literal["todo", "in_progress", "done"]
Priority = Literal["low", "medium", "high", "urgent"]
STATUSES: tuple[Status, ...] = ("todo", "in_progress", "done")
PRIORITIES: tuple[Priority, ...] = ("low", "medium", "high", "urgent")
SortKey = Literal[
    "created_at", "-created_at", "due_date", "-due_date", "priority", "-priority",
    "updated_at", "-updated_at", "title", "-title",
]
MAX_TAGS = 20


def utc_millis(moment: datetime) -> datetime:
    """``moment`` in UTC, truncated to milliseconds as MongoDB stores it.

    Raises:
        ValueError: the moment cannot be expressed in UTC (e.g. year 9999 with a negative offset).
    """
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def _distinct(value: list[str]) -> list[str]:
    """De-duplicated, first occurrence first."""
    return list(dict.fromkeys(value))


Title = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra={"pattern": PRINTABLE_NOT_BLANK}),
    AfterValidator(printable_not_blank),
]
"""1..200 characters as sent, no control characters, not blank; stored without surrounding spaces."""
Description = Annotated[
    str, Field(max_length=5000, json_schema_extra={"pattern": PRINTABLE_MULTILINE}), AfterValidator(printable_multiline)
]
"""Up to 5000 characters; line breaks and tabs are the only control characters allowed."""
Tag = Annotated[
    str,
    Field(min_length=1, max_length=32, json_schema_extra={"pattern": PRINTABLE_NOT_BLANK}),
    AfterValidator(printable_not_blank),
    AfterValidator(str.lower),
]
"""1..32 characters as sent, not blank; stored trimmed and lower-cased."""
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_distinct)]
"""At most 20 tags (DESIGN §4), stored lower-cased and de-duplicated."""
DueDate = Annotated[Timestamp, AfterValidator(utc_millis)]
"""RFC 3339 with an offset or ``Z`` (a date-time without one is 422), kept in UTC to the millisecond."""
QueryText = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": PRINTABLE}), AfterValidator(printable)]


class TaskCreate(RequestBody):
    title: Title = Field(examples=["Write the quarterly report"])
    description: Description = ""
    status: Status = "todo"
    priority: Priority = "medium"
    due_date: DueDate | None = Field(default=None, examples=["2030-01-31T17:00:00Z"])
    tags: Tags = Field(default_factory=list, examples=[["work", "reports"]])


def _optional() -> Any:
    """A field that may be left out but not given as ``null``: its ``None`` default only means
    "not given" (pydantic does not validate defaults, so an explicit null fails the type)."""
    return Field(default=None)


def _partial_update_schema(schema: dict[str, Any]) -> None:
    """JSON Schema of a partial update: at least one field, and no defaults (a field left out
    stays as it is)."""
    schema["minProperties"] = 1
    for field in schema["properties"].values():
        field.pop("default", None)


class TaskChange(RequestBody):
    """A partial update: only the fields given change; ``due_date: null`` removes the due date."""

    model_config = ConfigDict(json_schema_extra=_partial_update_schema)

    title: Title = _optional()
    description: Description = _optional()
    status: Status = _optional()
    priority: Priority = _optional()
    due_date: DueDate | None = None
    tags: Tags = _optional()

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields given, with their new values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class TaskListQuery(PageQuery):
    """Filters and order of ``GET /tasks``; every filter narrows the list (they combine with AND)."""

    status: Status | None = None
    priority: Priority | None = None
    tag: Tag | None = Field(default=None, description="Tasks carrying this tag (case-insensitive).")
    q: QueryText | None = Field(
        default=None, description="Case-insensitive substring of the title or description; taken literally."
    )
    due_before: Timestamp | None = Field(default=None, description="Due strictly before this moment.")
    due_after: Timestamp | None = Field(default=None, description="Due strictly after this moment.")
    overdue: bool | None = Field(
        default=None, description="true: open (not done) and due before now; false: everything else."
    )
    sort: SortKey = Field(
        default="-created_at",
        description="Field to order by, descending with a leading '-'; ties keep creation order. "
        "Tasks without a due date come last in ascending due_date order; priority ascends low → urgent.",
    )


class Task(BaseModel):
    """A task as its owner sees it (DESIGN §4); also the snapshot in ``task.*`` events."""

    id: str
    title: str
    description: str
    status: Status
    priority: Priority
    due_date: datetime | None
    tags: list[str]
    owner_id: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    version: int

    @classmethod
    def from_document(cls, task: dict[str, Any]) -> Self:
        """From a stored task (or tombstone); stored helper fields are left out."""
        owner = task["owner_id"] if task.get("owner_id") is not None else task["deleted_owner_id"]
        return cls.model_validate({**task, "id": str(task["_id"]), "owner_id": owner}, strict=False)

    @property
    def etag(self) -> str:
        return etag(self.version)


def etag(version: int) -> str:
    """The strong entity tag of a task's version (RFC 9110 §8.8.3), e.g. ``"3"``."""
    return f'"{version}"'


class StatusCounts(BaseModel):
    todo: int = 0
    in_progress: int = 0
    done: int = 0


class PriorityCounts(BaseModel):
    low: int = 0
    medium: int = 0
    high: int = 0
    urgent: int = 0


class TaskStats(BaseModel):
    """The caller's tasks counted; each figure equals what ``GET /tasks`` lists at that moment."""

    total: int
    by_status: StatusCounts
    by_priority: PriorityCounts
    overdue: int = Field(description="Open tasks (not done) whose due date has passed.")
    completed_last_7_days: int = Field(description="Done tasks completed within the last 7 × 24 hours.")


class OwnerTaskCount(BaseModel):
    """One owner's task counts, for the admin service's read model."""

    owner_id: str
    total: int
    by_status: StatusCounts


class TaskSnapshotQuery(PageQuery):
    """Pages of every live task, in id order; ``after`` pages by the last id seen, so deleting
    tasks meanwhile never shifts a live task out of the pages still to come."""

    after: str | None = Field(
        default=None, pattern="^[0-9a-f]{24}$", description="Only tasks whose id sorts after this task id."
    )


class OwnerCountQuery(PageQuery):
    """Pages of every owner's counts, by owner id."""
