"""Every query the tasks store issues is served by a declared index (issue 5 §4).

The test drives the domain through every operation, every list filter (alone and all at once)
in every order, the statistics, settling a crashed write and the internal owner listing, and
records each command sent to ``tasks`` and ``task_counts`` with a pymongo command listener.
Each recorded filter/sort shape must be covered by a declared index by the prefix rule below.

On a real MongoDB (``buildInfo`` without ``ferretdbVersion``) each recorded query is also run
through ``explain`` and must not scan the collection. On FerretDB that branch is not taken:
FerretDB 1.24 accepts index declarations but its SQLite handler scans every collection for any
filter other than ``{_id: value}`` and its PostgreSQL handler pushes down only equality, so
explain would say nothing about the indexes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database
from taskflow_common.events.outbox import Outbox, OutboxStore
from taskflow_common.events.plumbing import ServiceEvents
from taskflow_common.mongo import Mongo
from taskflow_tasks.events import TaskEvents
from taskflow_tasks.schemas import TaskCreate, TaskListQuery
from taskflow_tasks.store import COUNTS, INDEXES, TASKS, CountStore, TaskStore
from taskflow_tasks.tasks import Tasks

from tests.support.commands import Commands
from tests.support.infra import Infra

WATCHED = (TASKS, COUNTS)
SORTS = [
    "created_at",
    "-created_at",
    "due_date",
    "-due_date",
    "priority",
    "-priority",
    "updated_at",
    "-updated_at",
    "title",
    "-title",
]
NOW = datetime.now(UTC)
FILTERS: list[dict[str, Any]] = [
    {"status": "todo"},
    {"priority": "high"},
    {"tag": "work"},
    {"q": "report"},
    {"due_before": NOW},
    {"due_after": NOW},
    {"overdue": True},
    {"overdue": False},
    {
        "status": "todo",
        "priority": "high",
        "tag": "work",
        "q": "r",
        "due_before": NOW,
        "due_after": NOW - timedelta(days=9),
        "overdue": True,
    },
]


def shapes(command: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], list[tuple[str, int]]]]:
    """(collection, filter, sort) of each query in a recorded command."""
    collection = command[command["name"]]
    name = command["name"]
    if name == "find":
        yield collection, dict(command.get("filter", {})), list(command.get("sort", {}).items())
    elif name == "aggregate":
        stages = command["pipeline"]
        match = next((stage["$match"] for stage in stages if "$match" in stage), {})
        sort = next((list(stage["$sort"].items()) for stage in stages if "$sort" in stage), [])
        yield collection, dict(match), sort
    elif name == "count" and command.get("query"):  # without a query MongoDB counts from metadata
        yield collection, dict(command["query"]), []
    elif name == "update":
        for update in command["updates"]:
            yield collection, dict(update["q"]), []
    elif name == "delete":
        for delete in command["deletes"]:
            yield collection, dict(delete["q"]), []
    elif name == "findAndModify":
        yield collection, dict(command.get("query", {})), list(command.get("sort", {}).items())


def equality_fields(query: Mapping[str, Any]) -> set[str]:
    """Top-level fields compared for equality (a scalar, not an operator document)."""
    return {
        field
        for field, value in query.items()
        if not field.startswith("$") and not (isinstance(value, Mapping) and any(key.startswith("$") for key in value))
    }


LIST_FILTERS = {"status", "priority", "tags"}
"""Equalities that only narrow an owner's list: any combination of them may be asked for, so
they are applied to the owner's index-ordered entries instead of having an index each."""


def covered(collection: str, query: Mapping[str, Any], sort: list[tuple[str, int]]) -> bool:
    """The prefix rule (equality, then sort): a declared index whose leading keys are exactly the
    query's equality fields (list filters aside), at least one unless there is a sort, followed
    by the sort's fields, all in the sort's direction or all reversed. Range and regex
    conditions are applied to the entries that prefix selects."""
    equal = equality_fields(query)
    if "_id" in equal:
        return True
    required = equal - LIST_FILTERS
    declared = [[("_id", 1)]] + [
        list(model.document["key"].items())
        for group in INDEXES
        if group.collection == collection
        for model in group.models
    ]
    for keys in declared:
        if {field for field, _ in keys[: len(required)]} != required or (not required and not sort):
            continue
        following = keys[len(required) : len(required) + len(sort)]
        if [field for field, _ in following] != [field for field, _ in sort]:
            continue
        same = all(
            direction == index_direction for (_, direction), (_, index_direction) in zip(sort, following, strict=True)
        )
        opposite = all(
            direction == -index_direction for (_, direction), (_, index_direction) in zip(sort, following, strict=True)
        )
        if same or opposite:
            return True
    return False


def plan_stages(plan: Any) -> Iterator[str]:
    if isinstance(plan, Mapping):
        if "stage" in plan:
            yield plan["stage"]
        for value in plan.values():
            yield from plan_stages(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from plan_stages(item)


@pytest.fixture
def recorded(infra: Infra) -> Iterator[tuple[Tasks, Commands, Database]]:
    name = f"idx_{uuid.uuid4().hex[:10]}"
    recorder = Commands(name)
    client: MongoClient = MongoClient(infra.mongodb_uri, tz_aware=True, event_listeners=[recorder])
    database = client[name]
    db = lambda: database  # noqa: E731
    for group in INDEXES:
        database[group.collection].create_indexes(list(group.models))
    mongo = Mongo(infra.mongodb_uri, name, app_name="index-test")
    events = ServiceEvents("tasks", infra.rabbitmq_url, mongo, [TASKS])  # builds events only; nothing is published
    tasks = Tasks(TaskStore(db, Outbox(OutboxStore(db, [TASKS]))), CountStore(db), TaskEvents(events))
    yield tasks, recorder, database
    client.drop_database(name)
    client.close()
    mongo.close()


def exercise(tasks: Tasks, database: Database) -> None:
    """Every operation and query shape of the store, for one owner."""
    owner = "owner-1"
    made = [
        tasks.create(owner, TaskCreate(title="write report", tags=["work"], due_date=NOW - timedelta(days=1))),
        tasks.create(owner, TaskCreate(title="done", status="done", priority="high")),
        tasks.create(owner, TaskCreate(title="later", due_date=NOW + timedelta(days=3))),
    ]
    tasks.update(owner, str(made[0]["_id"]), {"status": "done"}, '"1"')
    tasks.update(owner, str(made[2]["_id"]), {"title": "later still"}, None)
    tasks.delete(owner, str(made[1]["_id"]), None)
    tasks.get(owner, str(made[2]["_id"]))
    for sort in SORTS:
        for filters in [{}, *FILTERS]:
            tasks.list(owner, TaskListQuery(sort=sort, **filters))
    tasks.stats(owner)
    # a leftover intent whose lease passed, settled by the next reader and by the next writer
    for settled_by in (lambda: tasks.stats(owner), lambda: tasks.update(owner, str(made[2]["_id"]), {"status": "done"}, None)):
        leftover = {"id": "dead", "task_id": made[2]["_id"], "kind": "change", "delta": [], "version": 1,
                    "intent": None, "lease_until": NOW - timedelta(days=1)}
        database[COUNTS].update_one({"_id": owner}, {"$set": {"pending": leftover}})
        settled_by()
    tasks.list(owner, TaskListQuery())
    tasks.owner_counts(0, 20)


def test_every_query_of_the_store_is_covered_by_a_declared_index(recorded: tuple[Tasks, Commands, Database]) -> None:
    tasks, recorder, database = recorded
    exercise(tasks, database)
    watched = [command for collection in WATCHED for command in recorder.to(collection)]
    queries = [shape for command in watched for shape in shapes(command)]
    assert {collection for collection, _, _ in queries} == set(WATCHED)
    uncovered = [
        (collection, query, sort) for collection, query, sort in queries if not covered(collection, query, sort)
    ]
    assert uncovered == []
    if "ferretdbVersion" not in database.client.admin.command("buildInfo"):
        for command in watched:
            if command["name"] not in ("find", "aggregate", "count"):
                continue
            explained = {key: value for key, value in command.items() if key not in ("name", "lsid") and key[0] != "$"}
            plan = database.command("explain", explained, verbosity="queryPlanner")
            assert "COLLSCAN" not in set(plan_stages(plan["queryPlanner"]["winningPlan"])), command


def test_the_coverage_rule_refuses_what_no_index_serves() -> None:
    assert covered(TASKS, {"owner_id": "o"}, [("seq", -1)])
    assert covered(
        TASKS, {"owner_id": "o", "status": "todo", "$and": [{"due_date": {"$lt": NOW}}]}, [("title_key", 1), ("seq", 1)]
    )
    assert covered(TASKS, {"_id": 1, "version": 2}, [])
    assert not covered(TASKS, {"status": "todo"}, [])
    assert not covered(TASKS, {"owner_id": "o"}, [("title", 1)])
    assert not covered(TASKS, {"owner_id": "o"}, [("title_key", 1), ("seq", -1)])
    assert not covered(TASKS, {"due_date": {"$lt": NOW}}, [])
    assert not covered(COUNTS, {"total": 3}, [])
    assert covered(TASKS, {"owner_id": "o", "completed_at": {"$gte": NOW, "$lt": NOW}}, [])
    assert covered(TASKS, {"owner_id": "o", "status": {"$in": ["todo"]}, "due_date": {"$gte": NOW, "$lt": NOW}}, [])
    assert not covered(TASKS, {"owner_id": "o", "open_due_day": "2030-01-01"}, [])  # a helper field of before
