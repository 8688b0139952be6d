"""One task at a time: create, read, change, delete, validation, ownership, ETag/If-Match and
concurrent changes (DESIGN §3, §4 tasks; issue 5 §1, §2, §5)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo.database import Database

from tests.support.events import EventProbe
from tests.support.infra import Infra

from .conftest import TASKS, User

FIELDS = {
    "id",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "tags",
    "owner_id",
    "created_at",
    "updated_at",
    "completed_at",
    "version",
}


def test_a_created_task_has_defaults_location_and_etag(client: FlaskClient, alice: User) -> None:
    response = client.post(TASKS, json={"title": "  Write the report  "}, headers=alice.headers)
    assert response.status_code == 201
    task = response.json
    assert set(task) == FIELDS
    assert task["title"] == "Write the report"
    assert (task["description"], task["status"], task["priority"], task["due_date"], task["tags"]) == (
        "",
        "todo",
        "medium",
        None,
        [],
    )
    assert task["owner_id"] == alice.id and task["version"] == 1 and task["completed_at"] is None
    assert task["created_at"] == task["updated_at"] and task["created_at"].endswith("Z")
    assert response.headers["Location"] == f"{TASKS}/{task['id']}"
    assert response.headers["ETag"] == '"1"'
    fetched = client.get(response.headers["Location"], headers=alice.headers)
    assert fetched.status_code == 200 and fetched.json == task and fetched.headers["ETag"] == '"1"'


def test_due_dates_are_stored_in_utc_to_the_millisecond_and_tags_normalized(client: FlaskClient, alice: User) -> None:
    body = {"title": "t", "due_date": "2030-05-01T10:00:00.123456+02:00", "tags": ["Work", "work", " Home ", "URGENT"]}
    task = client.post(TASKS, json=body, headers=alice.headers).json
    assert task["due_date"] == "2030-05-01T08:00:00.123000Z"
    assert task["tags"] == ["work", "home", "urgent"]


def test_a_task_created_done_is_completed(client: FlaskClient, alice: User) -> None:
    task = client.post(TASKS, json={"title": "t", "status": "done"}, headers=alice.headers).json
    assert task["completed_at"] == task["created_at"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "x" * 200 + " "},
        {"title": 5},
        {"title": None},
        {"title": ["a"]},
        {"title": {"$ne": ""}},
        {"title": "line\nbreak"},
        {"title": "t", "description": "x" * 5001},
        {"title": "t", "description": "nul\x00"},
        {"title": "t", "status": "finished"},
        {"title": "t", "status": "DONE"},
        {"title": "t", "priority": "critical"},
        {"title": "t", "priority": 1},
        {"title": "t", "due_date": "2030-01-01T10:00:00"},
        {"title": "t", "due_date": "2030-01-01"},
        {"title": "t", "due_date": "tomorrow"},
        {"title": "t", "due_date": 1893456000},
        {"title": "t", "due_date": "9999-12-31T23:00:00-05:00"},
        {"title": "t", "tags": "work"},
        {"title": "t", "tags": [""]},
        {"title": "t", "tags": ["x" * 33]},
        {"title": "t", "tags": [f"t{i}" for i in range(21)]},
        {"title": "t", "tags": ["work"] * 21},
        {"title": "t", "tags": ["tab\tbed"]},
        {"title": "t", "tags": [1]},
        {"title": "t", "owner_id": "someone-else"},
        {"title": "t", "id": "650000000000000000000000"},
        {"title": "t", "version": 7},
        {"title": "t", "created_at": "2020-01-01T00:00:00Z"},
        {"title": "t", "updated_at": "2020-01-01T00:00:00Z"},
        {"title": "t", "completed_at": "2020-01-01T00:00:00Z"},
        {"title": "t", "colour": "red"},
    ],
)
def test_invalid_tasks_are_422_and_create_nothing(client: FlaskClient, alice: User, body: dict) -> None:
    response = client.post(TASKS, json=body, headers=alice.headers)
    assert response.status_code == 422, body
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"] and all({"field", "message"} == set(error) for error in response.json["errors"])
    assert client.get(TASKS, headers=alice.headers).json["total"] == 0


@pytest.mark.parametrize(
    ("method", "body", "field", "message"),
    [
        ("POST", {"title": "t", "due_date": "2030-01-01T10:00:00"}, "due_date",
         "must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T09:00:00Z"),
        ("POST", {"title": "t", "due_date": "9999-12-31T23:00:00-05:00"}, "due_date",
         "is out of range once converted to UTC"),
        ("PATCH", {}, "body", "give at least one field to change"),
    ],
)
def test_a_validators_message_reads_without_pydantics_prefix(
    client: FlaskClient, alice: User, create_task, method: str, body: dict, field: str, message: str,
) -> None:
    path = TASKS if method == "POST" else f"{TASKS}/{create_task()['id']}"
    response = client.open(path, method=method, json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"] == [{"field": field, "message": message}]


def test_bodies_that_are_not_json_objects_are_refused(client: FlaskClient, alice: User) -> None:
    assert (
        client.post(TASKS, data='{"title": ', headers={**alice.headers, "Content-Type": "application/json"}).status_code
        == 400
    )
    assert (
        client.post(TASKS, data="title=x", headers={**alice.headers, "Content-Type": "text/plain"}).status_code == 415
    )
    assert client.post(TASKS, json=["title"], headers=alice.headers).status_code == 422
    huge = {"title": "t", "description": "x" * (1024 * 1024)}
    assert client.post(TASKS, json=huge, headers=alice.headers).status_code == 413


def test_every_route_needs_a_valid_token(client: FlaskClient, create_task) -> None:
    task = create_task()
    for method, path in [
        ("GET", TASKS),
        ("POST", TASKS),
        ("GET", f"{TASKS}/stats"),
        ("GET", f"{TASKS}/{task['id']}"),
        ("PATCH", f"{TASKS}/{task['id']}"),
        ("DELETE", f"{TASKS}/{task['id']}"),
    ]:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = client.open(path, method=method, json={"title": "x"}, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "task_id", ["123", "zzzzzzzzzzzzzzzzzzzzzzzz", "650000000000000000000000", "%24ne", "stats.json"]
)
def test_malformed_and_unknown_ids_are_the_same_404(client: FlaskClient, alice: User, task_id: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = client.open(f"{TASKS}/{task_id}", method=method, json={"title": "x"}, headers=alice.headers)
        assert response.status_code == 404, (method, task_id)
        assert response.json["detail"] == "No such task."


def test_another_users_task_is_404_for_every_operation_and_stays_unchanged(
    client: FlaskClient, alice: User, bob: User, create_task
) -> None:
    task = create_task(title="Alice's", tags=["private"])
    path = f"{TASKS}/{task['id']}"
    unknown = client.get(f"{TASKS}/650000000000000000000000", headers=bob.headers)
    for response in (
        client.get(path, headers=bob.headers),
        client.patch(path, json={"title": "Bob was here"}, headers=bob.headers),
        client.patch(path, json={"title": "Bob was here"}, headers={**bob.headers, "If-Match": '"1"'}),
        client.delete(path, headers=bob.headers),
        client.delete(path, headers={**bob.headers, "If-Match": "*"}),
    ):
        assert response.status_code == 404
        assert response.json == unknown.json
    assert client.get(path, headers=alice.headers).json == task
    assert client.get(TASKS, headers=bob.headers).json["total"] == 0
    assert client.get(f"{TASKS}?tag=private", headers=bob.headers).json["items"] == []
    assert client.get(f"{TASKS}/stats", headers=bob.headers).json["total"] == 0


def test_an_admin_sees_only_their_own_tasks_here(client: FlaskClient, new_user, create_task) -> None:
    create_task()
    admin = new_user(role="admin")
    assert client.get(TASKS, headers=admin.headers).json["total"] == 0


def test_a_partial_update_changes_only_what_is_given(client: FlaskClient, alice: User, create_task) -> None:
    task = create_task(description="keep me", tags=["a"], due_date="2030-01-01T00:00:00Z")
    response = client.patch(
        f"{TASKS}/{task['id']}", json={"title": "Renamed", "priority": "high"}, headers=alice.headers
    )
    assert response.status_code == 200
    changed = response.json
    assert (changed["title"], changed["priority"], changed["version"]) == ("Renamed", "high", 2)
    assert (changed["description"], changed["tags"], changed["due_date"]) == ("keep me", ["a"], "2030-01-01T00:00:00Z")
    assert changed["created_at"] == task["created_at"] and changed["updated_at"] >= task["updated_at"]
    assert response.headers["ETag"] == '"2"'
    cleared = client.patch(f"{TASKS}/{task['id']}", json={"due_date": None}, headers=alice.headers).json
    assert cleared["due_date"] is None and cleared["version"] == 3


def test_changing_nothing_writes_nothing(client: FlaskClient, alice: User, create_task) -> None:
    task = create_task(title="Same")
    response = client.patch(f"{TASKS}/{task['id']}", json={"title": "Same", "status": "todo"}, headers=alice.headers)
    assert response.status_code == 200 and response.json == task


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": None},
        {"status": None},
        {"tags": None},
        {"description": None},
        {"priority": None},
        {"title": ""},
        {"version": 2},
        {"owner_id": "x"},
        {"id": "x"},
        {"completed_at": None},
        {"created_at": "2020-01-01T00:00:00Z"},
        {"due_date": "2030-01-01T00:00:00"},
        {"status": "archived"},
        {"unknown": 1},
    ],
)
def test_invalid_changes_are_422_and_change_nothing(client: FlaskClient, alice: User, create_task, body: dict) -> None:
    task = create_task()
    response = client.patch(f"{TASKS}/{task['id']}", json=body, headers=alice.headers)
    assert response.status_code == 422, body
    assert client.get(f"{TASKS}/{task['id']}", headers=alice.headers).json == task


def test_completed_at_follows_the_status(client: FlaskClient, alice: User, create_task) -> None:
    task = create_task()
    path = f"{TASKS}/{task['id']}"
    started = client.patch(path, json={"status": "in_progress"}, headers=alice.headers).json
    assert started["completed_at"] is None
    done = client.patch(path, json={"status": "done"}, headers=alice.headers).json
    assert done["completed_at"] == done["updated_at"]
    renamed = client.patch(path, json={"title": "still done"}, headers=alice.headers).json
    assert renamed["completed_at"] == done["completed_at"]
    reopened = client.patch(path, json={"status": "todo"}, headers=alice.headers).json
    assert reopened["completed_at"] is None


def test_if_match_with_the_current_etag_applies_and_a_stale_one_is_412_changing_nothing(
    client: FlaskClient, alice: User, create_task
) -> None:
    task = create_task()
    path = f"{TASKS}/{task['id']}"
    ok = client.patch(path, json={"title": "v2"}, headers={**alice.headers, "If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    for stale in ('"1"', 'W/"1"', "2", '"3", "1"'):
        refused = client.patch(path, json={"title": "lost"}, headers={**alice.headers, "If-Match": stale})
        assert refused.status_code == 412, stale
        assert refused.mimetype == "application/problem+json" and refused.headers["ETag"] == '"2"'
        assert client.delete(path, headers={**alice.headers, "If-Match": stale}).status_code == 412
    assert client.get(path, headers=alice.headers).json == ok.json
    assert (
        client.patch(path, json={"title": "v3"}, headers={**alice.headers, "If-Match": '"9", "2"'}).status_code == 200
    )
    assert client.patch(path, json={"title": "v4"}, headers={**alice.headers, "If-Match": "*"}).status_code == 200
    # The tag a compressing gateway hands back (nginx's gzip weakens it) names the same version.
    assert client.patch(path, json={"title": "v5"}, headers={**alice.headers, "If-Match": 'W/"4"'}).status_code == 200
    assert client.delete(path, headers={**alice.headers, "If-Match": '"5"'}).status_code == 204


def test_if_none_match_answers_304_while_the_version_is_current(client: FlaskClient, alice: User, create_task) -> None:
    task = create_task()
    path = f"{TASKS}/{task['id']}"
    unchanged = client.get(path, headers={**alice.headers, "If-None-Match": '"1"'})
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == '"1"' and not unchanged.data
    client.patch(path, json={"title": "new"}, headers=alice.headers)
    assert client.get(path, headers={**alice.headers, "If-None-Match": '"1"'}).status_code == 200


def test_a_deleted_task_is_gone_everywhere(client: FlaskClient, alice: User, create_task, db: Database) -> None:
    task = create_task(tags=["gone"])
    keep = create_task()
    path = f"{TASKS}/{task['id']}"
    assert client.delete(path, headers=alice.headers).status_code == 204
    assert client.get(path, headers=alice.headers).status_code == 404
    assert client.patch(path, json={"title": "x"}, headers=alice.headers).status_code == 404
    assert client.delete(path, headers=alice.headers).status_code == 404
    listed = client.get(TASKS, headers=alice.headers).json
    assert [item["id"] for item in listed["items"]] == [keep["id"]] and listed["total"] == 1
    assert client.get(f"{TASKS}?tag=gone", headers=alice.headers).json["total"] == 0
    assert client.get(f"{TASKS}/stats", headers=alice.headers).json["total"] == 1
    tombstone = db.tasks.find_one({"title": task["title"]})
    if tombstone is not None:  # until the relay has published task.deleted
        assert tombstone["_deleted"] is True and tombstone["owner_id"] is None


def test_two_concurrent_changes_without_if_match_are_both_applied(app: Flask, alice: User, create_task) -> None:
    task = create_task()
    path = f"{TASKS}/{task['id']}"
    changes = [{"title": "renamed"}, {"priority": "urgent"}, {"tags": ["x"]}, {"status": "in_progress"}]
    barrier = threading.Barrier(len(changes))
    statuses: list[int] = []

    def change(body: dict) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.patch(path, json=body, headers=alice.headers).status_code)

    threads = [threading.Thread(target=change, args=(body,)) for body in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(changes)
    final = app.test_client().get(path, headers=alice.headers).json
    assert (final["title"], final["priority"], final["tags"], final["status"]) == (
        "renamed",
        "urgent",
        ["x"],
        "in_progress",
    )
    assert final["version"] == 1 + len(changes)


def test_concurrent_if_match_changes_of_one_version_let_exactly_one_win(app: Flask, alice: User, create_task) -> None:
    task = create_task()
    path = f"{TASKS}/{task['id']}"
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def change(title: str) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(
            client.patch(path, json={"title": title}, headers={**alice.headers, "If-Match": '"1"'}).status_code
        )

    threads = [threading.Thread(target=change, args=(f"title {i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 412, 412, 412]
    assert app.test_client().get(path, headers=alice.headers).json["version"] == 2


def test_each_write_publishes_its_events_with_snapshot_and_changed_fields(
    client: FlaskClient, alice: User, infra: Infra
) -> None:
    probe = EventProbe(infra.rabbitmq_url)
    try:
        due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        task = client.post(TASKS, json={"title": "t", "due_date": due}, headers=alice.headers).json
        path = f"{TASKS}/{task['id']}"
        client.patch(path, json={"title": "t2", "status": "done"}, headers=alice.headers)
        client.patch(path, json={"tags": ["x"]}, headers=alice.headers)
        client.delete(path, headers=alice.headers)
        found = probe.wait_for(lambda event: event["subject"] == task["id"], count=5)
    finally:
        probe.close()
    assert [event["type"] for event in found] == [
        "task.created",
        "task.updated",
        "task.completed",
        "task.updated",
        "task.deleted",
    ]
    assert [event["data"]["version"] for event in found] == [1, 2, 2, 3, 4]
    assert found[0]["data"] == {**task, "actor_id": alice.id}
    assert found[1]["data"]["changed"] == ["title", "status", "completed_at"]
    assert found[3]["data"]["changed"] == ["tags"]
    assert found[4]["data"]["title"] == "t2" and found[4]["data"]["tags"] == ["x"]
    assert all(event["source"] == "taskflow/tasks" and event["data"]["actor_id"] == alice.id for event in found)
