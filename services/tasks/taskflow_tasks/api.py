"""Public routes of the tasks service under ``/api/v1/tasks`` (DESIGN §4 tasks), reached through
the gateway: parse → authorize → call :class:`~.tasks.Tasks` → respond. Every route serves the
signed-in user's own tasks only (admins included)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request
from taskflow_common.api import Api, Link
from taskflow_common.pagination import Page
from taskflow_common.tokens import Principal
from werkzeug.routing import BaseConverter

from . import idempotency
from .idempotency import IdempotentCreates
from .schemas import Task, TaskChange, TaskCreate, TaskListQuery, TaskStats
from .tasks import Tasks

PREFIX = "/api/v1/tasks"


class TaskIdConverter(BaseConverter):
    """A task id path segment, any text but ``stats``: ``/tasks/stats`` is the statistics route
    alone, so its ``Allow`` lists only GET and a PATCH there is 405 (RFC 9110 §15.5.6), while a
    malformed id still reaches the route and gets the same 404 as an unknown one."""

    regex = r"(?!stats$)[^/]+"


api = Api(
    "tasks",
    PREFIX,
    title="TaskFlow tasks",
    description="Each user's tasks: CRUD, filtering, search, statistics (DESIGN §4 tasks). Responses "
    "for one task carry its version as a strong ETag; send it back in If-Match to change or delete "
    "only that version (412 otherwise).",
    converters={"task_id": TaskIdConverter},
)


CREATED_TASK = {"task_id": "$response.body#/id"}
TASK_LINKS = {
    "GetTask": Link("get_task", CREATED_TASK, description="Read the task back."),
    "ChangeTask": Link("update_task", CREATED_TASK, description="Change the task."),
    "DeleteTask": Link("delete_task", CREATED_TASK, description="Delete the task."),
}


def tasks() -> Tasks:
    return current_app.extensions["taskflow_tasks.tasks"]


def creates() -> IdempotentCreates:
    return current_app.extensions["taskflow_tasks.creates"]


def _one(task: dict[str, Any], **headers: str) -> tuple[Task, dict[str, str]]:
    model = Task.from_document(task)
    return model, {"ETag": model.etag, **headers}


@api.post("", summary="Create a task", body=TaskCreate, response=Task, status=201,
          response_headers=("Location", "ETag"), links=TASK_LINKS, errors=(409,))
def create_task(principal: Principal, body: TaskCreate) -> tuple[Task, dict[str, str]]:
    """The signed-in user, who owns the new task. With an ``Idempotency-Key`` header (1 to 255
    visible ASCII characters, e.g. a UUID) the task is created once however often the request is
    sent within 24 hours: a repeat answers 201 with that task; the key with another body is 422,
    and 409 once that task was deleted."""
    key = idempotency.key_of(request.headers.get("Idempotency-Key"))
    if key is None:
        task = tasks().create(principal.user_id, body)
    else:
        task = creates().create(principal.user_id, key, body)
    return _one(task, Location=f"{PREFIX}/{task['_id']}")


@api.get("", summary="List the caller's tasks", query=TaskListQuery, response=Page[Task],
         links={"GetFirstTask": Link("get_task", {"task_id": "$response.body#/items/0/id"},
                                     description="The first task listed.")})
def list_tasks(principal: Principal, query: TaskListQuery) -> Page[Task]:
    """The signed-in user; filters combine with AND; newest first unless ``sort`` says otherwise."""
    found, total = tasks().list(principal.user_id, query)
    items = [Task.from_document(task) for task in found]
    return Page[Task](items=items, total=total, page=query.page, limit=query.limit)


@api.get("/stats", summary="Statistics of the caller's tasks", response=TaskStats)
def task_stats(principal: Principal) -> TaskStats:
    """The signed-in user; each figure is what GET /tasks with the matching filter counts."""
    return tasks().stats(principal.user_id)


@api.get("/<task_id:task_id>", summary="One of the caller's tasks", response=Task, errors=(404,), response_headers=("ETag",))
def get_task(principal: Principal, task_id: str) -> tuple[Task, dict[str, str]] | Response:
    """The task's owner. ``If-None-Match`` with the current ETag answers 304 without a body."""
    model, headers = _one(tasks().get(principal.user_id, task_id))
    wanted = {tag.strip().removeprefix("W/") for tag in request.headers.get("If-None-Match", "").split(",")}
    if "*" in wanted or model.etag in wanted:
        return Response(status=304, headers=headers)
    return model, headers


@api.patch("/<task_id:task_id>", summary="Change a task", body=TaskChange, response=Task, errors=(404, 412),
           response_headers=("ETag",), links=TASK_LINKS)
def update_task(principal: Principal, task_id: str, body: TaskChange) -> tuple[Task, dict[str, str]]:
    """The task's owner. Without ``If-Match`` the change applies to the latest version."""
    return _one(tasks().update(principal.user_id, task_id, body.changes(), request.headers.get("If-Match")))


@api.delete("/<task_id:task_id>", summary="Delete a task", status=204, errors=(404, 412))
def delete_task(principal: Principal, task_id: str) -> None:
    """The task's owner; ``If-Match`` is honoured as for a change."""
    tasks().delete(principal.user_id, task_id, request.headers.get("If-Match"))
