"""Internal routes of the tasks service under ``/internal``, never routed by the gateway.

The admin service calls them with an admin's bearer token to fill its read models (backfill):
each owner's task counts, and every task's snapshot. Every route requires the ``admin`` role.
"""

from __future__ import annotations

from taskflow_common.api import Api
from taskflow_common.pagination import Page

from .api import tasks
from .schemas import STATUSES, OwnerCountQuery, OwnerTaskCount, StatusCounts, Task, TaskSnapshotQuery

internal = Api(
    "tasks-internal",
    "/internal/owners",
    title="TaskFlow tasks (internal)",
    description="Task counts per owner for other TaskFlow services; not exposed by the gateway.",
)


@internal.get("/task-counts", summary="Every owner's task counts, by owner id", query=OwnerCountQuery,
              response=Page[OwnerTaskCount], access="admin")
def owner_task_counts(query: OwnerCountQuery) -> Page[OwnerTaskCount]:
    """Admins, through the admin service. Owners whose tasks were all deleted are listed with 0."""
    found, total = tasks().owner_counts(query.skip, query.limit)
    items = [
        OwnerTaskCount(
            owner_id=counters["_id"],
            total=counters.get("total", 0),
            by_status=StatusCounts(**{status: counters.get("by_status", {}).get(status, 0) for status in STATUSES}),
        )
        for counters in found
    ]
    return Page[OwnerTaskCount](items=items, total=total, page=query.page, limit=query.limit)


internal_tasks = Api(
    "tasks-internal-snapshots",
    "/internal/tasks",
    title="TaskFlow tasks (internal snapshots)",
    description="Every task's snapshot for other TaskFlow services; not exposed by the gateway.",
)


@internal_tasks.get("", summary="Every live task, by id", query=TaskSnapshotQuery, response=Page[Task], access="admin")
def every_task(query: TaskSnapshotQuery) -> Page[Task]:
    """Admins, through the admin service: the same snapshots ``task.*`` events carry. Page with
    ``after`` (the last id of the previous page); ``total`` counts every live task."""
    found, total = tasks().every_task(query.after, query.skip, query.limit)
    return Page[Task](items=[Task.from_document(task) for task in found], total=total, page=query.page, limit=query.limit)
