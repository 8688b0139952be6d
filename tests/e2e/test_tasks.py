"""The tasks contract through the gateway (DESIGN §4 tasks, issue 5), and its events."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.support.accounts import PASSWORD, Account, sign_in, sign_up
from tests.support.events import EventProbe
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.system import Client, System

pytestmark = pytest.mark.e2e
TASKS = "/api/v1/tasks"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def create(gateway: Client, account: Account, **fields: object) -> dict:
    response = gateway.post(TASKS, json={"title": "a task", **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


def titles(gateway: Client, account: Account, query: str) -> list[str]:
    response = gateway.get(f"{TASKS}?{query}", headers=account.headers)
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


def test_create_list_filter_complete_and_delete_journey(gateway: Client) -> None:
    ada = sign_up(gateway)
    created = gateway.post(
        TASKS,
        json={"title": "Write report", "priority": "high", "tags": ["Work"], "due_date": "2030-06-01T09:00:00+02:00"},
        headers=ada.headers,
    )
    assert created.status_code == 201
    task = created.json()
    assert created.headers["Location"] == f"{TASKS}/{task['id']}" and created.headers["ETag"] == '"1"'
    assert created.headers["X-Request-ID"]
    assert (task["due_date"], task["tags"], task["owner_id"]) == ("2030-06-01T07:00:00Z", ["work"], ada.id)
    create(gateway, ada, title="Buy milk", priority="low")

    fetched = gateway.get(created.headers["Location"], headers=ada.headers)
    assert fetched.json() == task and fetched.headers["ETag"] == '"1"'
    listing = gateway.get(TASKS, headers=ada.headers).json()
    assert (listing["total"], listing["page"], listing["limit"]) == (2, 1, 20)
    assert [item["title"] for item in listing["items"]] == ["Buy milk", "Write report"]
    assert titles(gateway, ada, "tag=work&priority=high") == ["Write report"]
    assert titles(gateway, ada, "q=MILK") == ["Buy milk"]
    assert titles(gateway, ada, "sort=-priority&limit=1") == ["Write report"]

    done = gateway.patch(f"{TASKS}/{task['id']}", json={"status": "done"}, headers={**ada.headers, "If-Match": '"1"'})
    assert done.status_code == 200 and done.headers["ETag"] == '"2"'
    assert done.json()["completed_at"] is not None
    stats = gateway.get(f"{TASKS}/stats", headers=ada.headers).json()
    assert stats == {
        "total": 2,
        "by_status": {"todo": 1, "in_progress": 0, "done": 1},
        "by_priority": {"low": 1, "medium": 0, "high": 1, "urgent": 0},
        "overdue": 0,
        "completed_last_7_days": 1,
    }

    assert gateway.delete(f"{TASKS}/{task['id']}", headers=ada.headers).status_code == 204
    assert gateway.get(f"{TASKS}/{task['id']}", headers=ada.headers).status_code == 404
    assert gateway.get(f"{TASKS}/stats", headers=ada.headers).json()["total"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", TASKS, {"title": "x" * 201}),
        ("POST", TASKS, {"title": {"$gt": ""}}),
        ("POST", TASKS, {"title": 42}),
        ("POST", TASKS, {"title": "t", "priority": ["high"]}),
        ("POST", TASKS, {"title": "t", "due_date": "2030-06-01T09:00:00"}),
        ("POST", TASKS, {"title": "t", "owner_id": "someone"}),
        ("POST", TASKS, {"title": "t", "version": 3}),
        ("POST", TASKS, {"title": "t", "completed_at": "2030-06-01T09:00:00Z"}),
        ("POST", TASKS, {"title": "t", "is_admin": True}),
        ("POST", TASKS, {"title": "t", "tags": ["x" * 33]}),
        ("GET", f"{TASKS}?limit=0", None),
        ("GET", f"{TASKS}?limit=1000000", None),
        ("GET", f"{TASKS}?page=-1", None),
        ("GET", f"{TASKS}?limit=abc", None),
        ("GET", f"{TASKS}?status[$ne]=done", None),
        ("GET", f"{TASKS}?status=todo&status=done", None),
        ("GET", f"{TASKS}?sort=password", None),
        ("GET", f"{TASKS}?due_before=2030-01-01T00:00:00", None),
    ],
)
def test_bad_input_is_422_problem_details(gateway: Client, method: str, path: str, body: dict | None) -> None:
    account = sign_up(gateway)
    response = gateway.request(method, path, json=body, headers=account.headers)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["errors"]
    assert gateway.get(f"{TASKS}/stats", headers=account.headers).json()["total"] == 0


def test_malformed_unknown_and_foreign_ids_are_one_404(gateway: Client) -> None:
    owner, other = sign_up(gateway), sign_up(gateway)
    task = create(gateway, owner, title="mine", tags=["secret"])
    answers = []
    for task_id in ("123", "g" * 24, "0" * 24, task["id"]):
        for method, body in (("GET", None), ("PATCH", {"title": "stolen"}), ("DELETE", None)):
            response = gateway.request(method, f"{TASKS}/{task_id}", json=body, headers=other.headers)
            assert response.status_code == 404, (method, task_id)
            assert response.headers["Content-Type"] == "application/problem+json"
            answers.append({key: value for key, value in response.json().items()})
    assert all(answer == answers[0] for answer in answers)
    assert gateway.get(f"{TASKS}/{task['id']}", headers=owner.headers).json() == task
    assert gateway.get(f"{TASKS}?tag=secret", headers=other.headers).json()["total"] == 0


def test_a_stale_if_match_is_412_and_changes_nothing(gateway: Client) -> None:
    account = sign_up(gateway)
    task = create(gateway, account)
    path = f"{TASKS}/{task['id']}"
    assert gateway.patch(path, json={"title": "second"}, headers=account.headers).json()["version"] == 2
    stale = gateway.patch(path, json={"title": "lost update"}, headers={**account.headers, "If-Match": '"1"'})
    assert stale.status_code == 412 and stale.headers["ETag"] == '"2"'
    assert stale.headers["Content-Type"] == "application/problem+json"
    assert gateway.delete(path, headers={**account.headers, "If-Match": '"1"'}).status_code == 412
    current = gateway.get(path, headers=account.headers).json()
    assert (current["title"], current["version"]) == ("second", 2)


def test_concurrent_patches_without_if_match_are_all_applied(system: System) -> None:
    account = sign_up(Client(system.gateway_url))
    task = create(Client(system.gateway_url), account)
    path = f"{TASKS}/{task['id']}"
    changes = [{"title": "renamed"}, {"priority": "urgent"}, {"tags": ["both"]}, {"description": "kept"}]
    barrier = threading.Barrier(len(changes))
    statuses: list[int] = []

    def change(body: dict) -> None:
        client = Client(system.gateway_url)
        barrier.wait()
        statuses.append(client.patch(path, json=body, headers=account.headers).status_code)

    threads = [threading.Thread(target=change, args=(body,)) for body in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(changes)
    final = Client(system.gateway_url).get(path, headers=account.headers).json()
    assert (final["title"], final["priority"], final["tags"], final["description"]) == (
        "renamed",
        "urgent",
        ["both"],
        "kept",
    )
    assert final["version"] == 1 + len(changes)


def test_stats_agree_with_the_list(gateway: Client) -> None:
    account = sign_up(gateway)
    now = datetime.now(UTC)
    for i, (status, priority, due) in enumerate(
        [
            ("todo", "low", now - timedelta(days=2)),
            ("in_progress", "urgent", now - timedelta(hours=1)),
            ("done", "high", now - timedelta(days=1)),
            ("todo", "medium", now + timedelta(days=1)),
            ("done", "low", None),
        ]
    ):
        create(gateway, account, title=f"t{i}", status=status, priority=priority, due_date=iso(due) if due else None)
    stats = gateway.get(f"{TASKS}/stats", headers=account.headers).json()
    items = gateway.get(f"{TASKS}?limit=100", headers=account.headers).json()["items"]
    assert stats["total"] == len(items) == 5
    assert stats["by_status"] == {
        status: Counter(item["status"] for item in items)[status] for status in stats["by_status"]
    }
    assert stats["by_priority"] == {p: Counter(item["priority"] for item in items)[p] for p in stats["by_priority"]}
    assert stats["overdue"] == gateway.get(f"{TASKS}?overdue=true", headers=account.headers).json()["total"] == 2
    assert stats["completed_last_7_days"] == 2


def test_task_events_reach_the_exchange_with_types_snapshots_and_changed_fields(
    gateway: Client, events: EventProbe
) -> None:
    account = sign_up(gateway)
    task = create(gateway, account, title="evented", due_date="2030-01-01T00:00:00Z")
    path = f"{TASKS}/{task['id']}"
    gateway.patch(path, json={"priority": "urgent", "due_date": None}, headers=account.headers)
    gateway.patch(path, json={"status": "done"}, headers=account.headers)
    gateway.delete(path, headers=account.headers)
    found = events.wait_for(lambda event: event["subject"] == task["id"], count=5)
    assert [event["type"] for event in found] == [
        "task.created",
        "task.updated",
        "task.updated",
        "task.completed",
        "task.deleted",
    ]
    assert found[1]["data"]["changed"] == ["priority", "due_date"]
    assert found[2]["data"]["changed"] == ["status", "completed_at"]
    assert found[3]["data"]["status"] == "done" and found[3]["data"]["version"] == 3
    assert found[4]["data"]["version"] == 4
    assert all(event["data"]["actor_id"] == account.id and event["data"]["owner_id"] == account.id for event in found)


def test_a_deactivated_users_token_is_refused_by_tasks_within_seconds(gateway: Client, system: System) -> None:
    account = sign_up(gateway)
    task = create(gateway, account)
    admin = sign_in(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
    deactivated = requests.patch(
        f"{system.service_url('auth')}/internal/users/{account.id}",
        json={"active": False},
        headers=admin.headers,
        timeout=10,
    )
    assert deactivated.status_code == 200
    started = time.monotonic()
    while gateway.get(TASKS, headers=account.headers).status_code != 403:
        assert time.monotonic() - started < 10, "tasks still accepts the deactivated user's token"
        time.sleep(0.2)
    assert gateway.get(f"{TASKS}/{task['id']}", headers=account.headers).status_code == 403
    reactivated = requests.patch(
        f"{system.service_url('auth')}/internal/users/{account.id}",
        json={"active": True},
        headers=admin.headers,
        timeout=10,
    )
    assert reactivated.status_code == 200
    # The token from before the deactivation stays dead (issue 17 §1); a new sign-in reads the task.
    while gateway.get(f"{TASKS}/{task['id']}", headers=account.headers).status_code != 401:
        assert time.monotonic() - started < 20, "the token from before the deactivation came back"
        time.sleep(0.2)
    again = sign_in(gateway, account.email, PASSWORD)
    while gateway.get(f"{TASKS}/{task['id']}", headers=again.headers).status_code != 200:
        assert time.monotonic() - started < 20, "the reactivated user's tasks stay out of reach"
        time.sleep(0.2)


def test_internal_task_counts_are_not_routed_by_the_gateway(gateway: Client, system: System) -> None:
    admin = sign_in(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert gateway.get("/internal/owners/task-counts", headers=admin.headers).status_code == 404
    direct = requests.get(
        f"{system.service_url('tasks')}/internal/owners/task-counts", headers=admin.headers, timeout=10
    )
    assert direct.status_code == 200 and "items" in direct.json()


def test_bodies_over_one_mebibyte_are_413(gateway: Client) -> None:
    account = sign_up(gateway)
    response = gateway.post(TASKS, json={"title": "t", "description": "x" * (1024 * 1024 + 1)}, headers=account.headers)
    assert response.status_code == 413
