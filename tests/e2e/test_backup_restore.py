"""Backups that restore (issue 22 §3): a dump of a running system holding real data, made through
the API, restored into an empty FerretDB, serves the same users, tasks, notifications and stats
once the whole system starts on it (scripts/backup, scripts/restore: pymongo, Debian has no
mongodump)."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.accounts import Account, sign_in, sign_up
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.infra import Infra
from tests.support.processes import ROOT
from tests.support.system import Client, System

# A second FerretDB, RabbitMQ and whole system start inside the test: minutes on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fill(gateway: Client, admin: Account, marker: str) -> list[Account]:
    """Three users with tasks in every state, notifications read and unread, one user deactivated."""
    now = datetime.now(UTC)
    alice, bob, carol = (sign_up(gateway, name=f"{who} {marker}") for who in ("Alice", "Bob", "Carol"))
    tasks = [
        (alice, {"title": "Due within the hour", "priority": "urgent", "due_date": rfc3339(now + timedelta(minutes=30))}),
        (alice, {"title": "Overdue", "priority": "high", "tags": ["Ops", "late"], "due_date": rfc3339(now - timedelta(days=1))}),
        (alice, {"title": "Someday", "description": "é ✓ *literal* (regex)", "priority": "low"}),
        (alice, {"title": "Deleted soon"}),
        (bob, {"title": "Bob's first", "tags": ["home"]}),
        (bob, {"title": "Bob's second", "due_date": rfc3339(now + timedelta(days=3))}),
        (carol, {"title": "Carol's only"}),
    ]
    created = []
    for owner, body in tasks:
        response = gateway.post("/api/v1/tasks", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        created.append(response.json())
    assert gateway.patch(f"/api/v1/tasks/{created[2]['id']}", json={"status": "in_progress"}, headers=alice.headers).ok
    assert gateway.patch(f"/api/v1/tasks/{created[4]['id']}", json={"status": "done"}, headers=bob.headers).ok
    assert gateway.delete(f"/api/v1/tasks/{created[3]['id']}", headers=alice.headers).status_code == 204
    assert gateway.patch(f"/api/v1/admin/users/{carol.id}", json={"active": False}, headers=admin.headers).ok
    return [alice, bob, carol]


def view(client: Client, admin: Account, users: list[Account], marker: str) -> dict[str, Any]:
    """What the system serves about these users and overall: every answer's status and body."""
    def get(path: str, account: Account, **params: Any) -> tuple[int, Any]:
        response = client.get(path, params=params, headers=account.headers)
        return response.status_code, response.json()

    seen: dict[str, Any] = {
        "admin stats": get("/api/v1/admin/stats", admin),
        "admin users": get("/api/v1/admin/users", admin, q=marker, limit=100),
    }
    for user in users:
        seen[f"{user.email} me"] = get("/api/v1/auth/me", user)
        seen[f"{user.email} tasks"] = get("/api/v1/tasks", user, sort="created_at", limit=100)
        seen[f"{user.email} stats"] = get("/api/v1/tasks/stats", user)
        seen[f"{user.email} notifications"] = get("/api/v1/notifications", user, limit=100)
        seen[f"{user.email} as admin sees it"] = get(f"/api/v1/admin/users/{user.id}", admin)
        seen[f"{user.email} audit"] = get("/api/v1/admin/audit", admin, subject_id=user.id, limit=100)
    return seen


def settled(read: Callable[[], dict[str, Any]], ready: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
    """``read()`` once ``ready`` holds and two reads a second apart agree (the events are applied)."""
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        current = read()
        if ready(current) and current == previous:
            return current
        previous = current
        time.sleep(1)
    raise AssertionError(f"not settled within {timeout}s: {previous}")


def script(name: str, mongodb_uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "MONGODB_URI": mongodb_uri, "MONGODB_DB_PREFIX": "e2e_"}
    return subprocess.run([str(ROOT / "scripts" / name), *args], env=env, capture_output=True, text=True, check=False, timeout=300)


def documents(report: str) -> int:
    """The documents scripts/backup or scripts/restore says it wrote."""
    match = re.search(r"(?:dumped|restored) (\d+) documents of \d+ collections", report)
    assert match, report
    return int(match.group(1))


def test_a_dump_of_a_running_system_restored_into_an_empty_one_serves_the_same_users_tasks_and_stats(
    system: System, gateway: Client, tmp_path: Path
) -> None:
    admin = sign_in(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
    marker = uuid.uuid4().hex[:10]
    alice, bob, carol = users = fill(gateway, admin, marker)

    def complete(seen: dict[str, Any]) -> bool:
        counts = {user["name"].split()[0]: user["task_count"] for user in seen["admin users"][1]["items"]}
        kinds = {item["kind"] for item in seen[f"{alice.email} notifications"][1]["items"]}
        return counts == {"Alice": 3, "Bob": 2, "Carol": 1} and {"welcome", "reminder"} <= kinds and (
            seen[f"{carol.email} me"][0] == 403
        )

    before = settled(lambda: view(gateway, admin, users, marker), complete)
    unread = before[f"{alice.email} notifications"][1]["items"][0]
    assert gateway.post(f"/api/v1/notifications/{unread['id']}/read", headers=alice.headers).status_code == 204
    before = settled(lambda: view(gateway, admin, users, marker), complete)
    archive = tmp_path / "taskflow.tar"

    dumped = script("backup", system.mongodb_uri, str(archive))
    assert dumped.returncode == 0, dumped.stderr
    assert view(gateway, admin, users, marker) == before, "nothing changed while the dump ran"

    for directory in ("empty", "restored"):
        (tmp_path / directory).mkdir()
    empty = Infra(tmp_path / "empty").start()
    restored: System | None = None
    try:
        done = script("restore", empty.mongodb_uri, str(archive))
        assert done.returncode == 0, done.stderr
        assert documents(done.stderr) == documents(dumped.stderr) > 0
        again = script("restore", empty.mongodb_uri, str(archive))
        assert again.returncode == 1 and "restore refused" in again.stderr, "a restore never writes over data"
        # The restored system keeps the source's keys, as a cluster restored from a backup keeps its Secrets.
        var = Path(system.env["TASKFLOW_VAR"])
        restored = System(
            tmp_path / "restored",
            empty,
            BCRYPT_ROUNDS="4",
            ADMIN_EMAIL=ADMIN_EMAIL,
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            REMINDER_SCAN_SECONDS="1",
            JWT_PRIVATE_KEY_FILE=str(var / "auth" / "jwt-private.pem"),
            EMAIL_LINK_KEY_FILE=str(var / "email-link.key"),
        ).start()
        with Client(restored.gateway_url) as client:
            after = view(client, admin, users, marker)
            assert after == before
            time.sleep(3)  # reminders are scanned every second: none is sent twice after a restore
            assert view(client, admin, users, marker) == before
            assert sign_in(client, bob.email, bob.password).id == bob.id
    finally:
        if restored is not None:
            restored.stop()
        empty.stop()
