"""Who may call what: deactivated users are refused (fed by user.* events), and the internal
owner counts are for admins only (issue 5 §8; DESIGN §4 admin's task_count)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from taskflow_common.deactivation import DeactivatedUsers
from taskflow_common.events.envelope import Event

from .conftest import TASKS, User

COUNTS = "/internal/owners/task-counts"


def status_event(user: User, version: int, active: bool) -> Event:
    return Event(
        str(uuid.uuid4()),
        "user.activated" if active else "user.deactivated",
        "taskflow/auth",
        user.id,
        datetime.now(UTC),
        {"id": user.id, "active": active, "version": version},
    )


def wait_for_status(client: FlaskClient, user: User, status: int) -> None:
    deadline = time.monotonic() + 5
    while client.get(TASKS, headers=user.headers).status_code != status:
        assert time.monotonic() < deadline, f"still not {status}"
        time.sleep(0.1)


def test_a_deactivated_user_is_refused_and_their_tasks_stay(
    app: Flask, client: FlaskClient, alice: User, create_task
) -> None:
    task = create_task()
    deactivated: DeactivatedUsers = app.extensions["taskflow_tasks.deactivated"]
    deactivated.handle(status_event(alice, 2, active=False))
    wait_for_status(client, alice, 403)
    for method, path in [
        ("POST", TASKS),
        ("GET", f"{TASKS}/{task['id']}"),
        ("GET", f"{TASKS}/stats"),
        ("PATCH", f"{TASKS}/{task['id']}"),
        ("DELETE", f"{TASKS}/{task['id']}"),
    ]:
        response = client.open(path, method=method, json={"title": "x"}, headers=alice.headers)
        assert response.status_code == 403 and response.mimetype == "application/problem+json", (method, path)
    deactivated.handle(status_event(alice, 3, active=True))
    wait_for_status(client, alice, 200)
    assert client.get(f"{TASKS}/{task['id']}", headers=alice.headers).json == task


def counts_page(client: FlaskClient, admin: User, **params: Any) -> dict[str, Any]:
    response = client.get(COUNTS, query_string=params, headers=admin.headers)
    assert response.status_code == 200, response.json
    return response.json


def test_owner_task_counts_are_for_admins_only(client: FlaskClient, alice: User) -> None:
    assert client.get(COUNTS).status_code == 401
    assert client.get(COUNTS, headers=alice.headers).status_code == 403


def test_owner_task_counts_page_through_every_owner(client: FlaskClient, new_user, create_task) -> None:
    owners = [new_user() for _ in range(3)]
    create_task(owners[0], status="done")
    create_task(owners[0])
    create_task(owners[1], status="in_progress")
    gone = create_task(owners[2])
    client.delete(f"{TASKS}/{gone['id']}", headers=owners[2].headers)
    admin = new_user(role="admin")
    first, second = counts_page(client, admin, limit=2), counts_page(client, admin, limit=2, page=2)
    assert first["total"] == second["total"] == 3
    found = {item["owner_id"]: item for item in first["items"] + second["items"]}
    assert found[owners[0].id] == {
        "owner_id": owners[0].id,
        "total": 2,
        "by_status": {"todo": 1, "in_progress": 0, "done": 1},
    }
    assert found[owners[1].id]["by_status"] == {"todo": 0, "in_progress": 1, "done": 0}
    assert found[owners[2].id]["total"] == 0
    assert [item["owner_id"] for item in first["items"] + second["items"]] == sorted(found)
    assert client.get(COUNTS, query_string={"limit": 0}, headers=admin.headers).status_code == 422


SNAPSHOTS = "/internal/tasks"


def test_task_snapshots_are_for_admins_only(client: FlaskClient, alice: User) -> None:
    assert client.get(SNAPSHOTS).status_code == 401
    assert client.get(SNAPSHOTS, headers=alice.headers).status_code == 403


def test_task_snapshots_page_through_every_live_task_of_every_owner(client: FlaskClient, new_user, create_task) -> None:
    owners = [new_user() for _ in range(2)]
    kept = [create_task(owners[0]), create_task(owners[1], status="done"), create_task(owners[1])]
    gone = create_task(owners[0])
    client.delete(f"{TASKS}/{gone['id']}", headers=owners[0].headers)
    admin = new_user(role="admin")
    pages = [client.get(SNAPSHOTS, query_string={"limit": 2, "page": page}, headers=admin.headers).json for page in (1, 2)]
    assert pages[0]["total"] == 3
    listed = pages[0]["items"] + pages[1]["items"]
    assert sorted(listed, key=lambda task: task["id"]) == sorted(kept, key=lambda task: task["id"])
    assert [task["id"] for task in listed] == sorted(task["id"] for task in listed)


def test_task_snapshots_paged_by_the_last_id_miss_no_live_task_while_tasks_are_deleted(
    client: FlaskClient, new_user, create_task
) -> None:
    """Issue 18 §8: paging by ``page`` number, a deletion on a page already read shifted the next
    live task onto that page, and the backfill never saw it."""
    owner = new_user()
    created = sorted((create_task(owner) for _ in range(5)), key=lambda task: task["id"])
    admin = new_user(role="admin")
    first = client.get(SNAPSHOTS, query_string={"limit": 2}, headers=admin.headers).json["items"]
    assert [task["id"] for task in first] == [task["id"] for task in created[:2]]
    client.delete(f"{TASKS}/{first[0]['id']}", headers=owner.headers)
    rest, after = [], first[-1]["id"]
    while True:
        items = client.get(SNAPSHOTS, query_string={"limit": 2, "after": after}, headers=admin.headers).json["items"]
        rest += items
        if len(items) < 2:
            break
        after = items[-1]["id"]
    assert [task["id"] for task in rest] == [task["id"] for task in created[2:]]
    assert client.get(SNAPSHOTS, query_string={"after": "not-an-id"}, headers=admin.headers).status_code == 422


def test_the_openapi_documents_are_valid_and_describe_the_routes(client: FlaskClient) -> None:
    public = client.get(f"{TASKS}/openapi.json").json
    validate(public)
    validate(client.get("/internal/owners/openapi.json").json)
    assert set(public["paths"]) == {TASKS, f"{TASKS}/stats", f"{TASKS}/{{task_id}}"}
    assert set(public["paths"][f"{TASKS}/{{task_id}}"]) == {"get", "patch", "delete"}
    assert "412" in public["paths"][f"{TASKS}/{{task_id}}"]["patch"]["responses"]
    assert set(client.get("/internal/owners/openapi.json").json["paths"]) == {COUNTS}
    validate(client.get(f"{SNAPSHOTS}/openapi.json").json)
