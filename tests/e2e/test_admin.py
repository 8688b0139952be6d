"""The admin service through the gateway (DESIGN §4 admin, issue 6)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.accounts import PASSWORD, Account, sign_in, sign_up
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.system import Client

pytestmark = pytest.mark.e2e
ADMIN = "/api/v1/admin"


@pytest.fixture
def root(gateway: Client) -> Account:
    return sign_in(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)


def eventually(read: Callable[[], Any], accept: Callable[[Any], bool], *, timeout: float = 10) -> tuple[Any, float]:
    """Poll ``read`` until ``accept`` holds; returns the value and the seconds it took."""
    started = time.monotonic()
    while True:
        value = read()
        if accept(value):
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout}s: {value}")
        time.sleep(0.05)


def find_user(gateway: Client, root: Account, email: str) -> dict[str, Any] | None:
    items = gateway.get(f"{ADMIN}/users", params={"q": email}, headers=root.headers).json()["items"]
    return next((user for user in items if user["email"] == email), None)


@pytest.mark.parametrize(("method", "path"), [("GET", "/users"), ("GET", "/users/x"), ("PATCH", "/users/x"), ("GET", "/stats"), ("GET", "/audit")])
def test_a_non_admin_gets_403_on_every_admin_route(gateway: Client, method: str, path: str) -> None:
    user = sign_up(gateway)
    assert gateway.request(method, ADMIN + path, json={"role": "admin"}).status_code == 401
    response = gateway.request(method, ADMIN + path, json={"role": "admin"}, headers=user.headers)
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_new_user_shows_up_in_the_users_list_within_seconds(gateway: Client, root: Account) -> None:
    user = sign_up(gateway, name="Visible Soon")
    found, seconds = eventually(lambda: find_user(gateway, root, user.email), lambda found: found is not None)
    assert found["name"] == "Visible Soon" and found["role"] == "user" and found["task_count"] == 0
    assert seconds < 5


def test_a_promoted_user_can_use_admin_routes_with_a_new_token(gateway: Client, root: Account) -> None:
    user = sign_up(gateway)
    promoted = gateway.patch(f"{ADMIN}/users/{user.id}", json={"role": "admin"}, headers=root.headers)
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert find_user(gateway, root, user.email)["role"] == "admin"  # the change is visible at once
    # the old token says "user" (403), or is already refused as of an earlier access generation (401)
    assert gateway.get(f"{ADMIN}/stats", headers=user.headers).status_code in (401, 403)
    again = sign_in(gateway, user.email, PASSWORD)
    assert gateway.get(f"{ADMIN}/stats", headers=again.headers).status_code == 200
    audit = gateway.get(f"{ADMIN}/audit", params={"type": "user.role_changed", "subject_id": user.id}, headers=root.headers).json()
    [entry] = audit["items"]
    assert entry["actor_id"] == root.id and entry["summary"] == "role changed from user to admin"
    assert entry["trace_id"] is None or len(entry["trace_id"]) == 32


def test_a_deactivated_user_cannot_log_in_and_their_token_stops_working(gateway: Client, root: Account) -> None:
    user = sign_up(gateway)
    gateway.patch(f"{ADMIN}/users/{user.id}", json={"role": "admin"}, headers=root.headers)
    user = sign_in(gateway, user.email, PASSWORD)
    assert gateway.get(f"{ADMIN}/stats", headers=user.headers).status_code == 200
    response = gateway.patch(f"{ADMIN}/users/{user.id}", json={"active": False}, headers=root.headers)
    assert response.status_code == 200 and response.json()["active"] is False
    assert gateway.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).status_code == 403
    assert gateway.get("/api/v1/auth/me", headers=user.headers).status_code == 403
    # Admin learns it from user.deactivated: the still-valid admin token is refused within seconds.
    _, seconds = eventually(lambda: gateway.get(f"{ADMIN}/stats", headers=user.headers).status_code, lambda status: status == 403)
    assert seconds < 5
    audit = gateway.get(f"{ADMIN}/audit", params={"type": "user.deactivated", "subject_id": user.id}, headers=root.headers).json()
    assert [entry["actor_id"] for entry in audit["items"]] == [root.id]


SERVICES = ("/api/v1/auth/me", "/api/v1/tasks", "/api/v1/notifications", f"{ADMIN}/stats")


def _change(gateway: Client, root: Account, user: Account, change: str) -> None:
    if change == "demotion":
        response = gateway.patch(f"{ADMIN}/users/{user.id}", json={"role": "user"}, headers=root.headers)
    elif change == "password change":
        response = gateway.post("/api/v1/auth/password", headers=user.headers,
                                json={"current_password": PASSWORD, "new_password": PASSWORD + "-new"})
    else:
        response = gateway.post("/api/v1/auth/logout-all", headers=user.headers)
    assert response.status_code in (200, 204), response.text


@pytest.mark.parametrize("change", ["demotion", "password change", "logout-all"])
def test_tokens_issued_before_an_account_change_stop_working_everywhere_within_5_s(
    gateway: Client, root: Account, change: str
) -> None:
    """Issue 17 §1: an admin's access token, valid for 15 minutes, is refused by every service
    within 5 s of a demotion, a password change or a logout-all (401: refresh or sign in again);
    a demoted admin can neither use admin routes nor promote itself back with it."""
    user = sign_up(gateway)
    assert gateway.patch(f"{ADMIN}/users/{user.id}", json={"role": "admin"}, headers=root.headers).status_code == 200
    user = sign_in(gateway, user.email, PASSWORD)
    assert [gateway.get(path, headers=user.headers).status_code for path in SERVICES] == [200] * len(SERVICES)
    _change(gateway, root, user, change)
    _, seconds = eventually(lambda: [gateway.get(path, headers=user.headers).status_code for path in SERVICES],
                            lambda statuses: statuses == [401] * len(SERVICES))
    assert seconds < 5
    regained = gateway.patch(f"{ADMIN}/users/{user.id}", json={"role": "admin"}, headers=user.headers)
    assert regained.status_code == 401, regained.text
    refreshed = gateway.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    if change == "demotion":  # the refresh token lives on and brings the current role
        assert refreshed.status_code == 200 and refreshed.json()["user"]["role"] == "user"
        fresh = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        assert gateway.get("/api/v1/tasks", headers=fresh).status_code == 200
        assert gateway.get(f"{ADMIN}/stats", headers=fresh).status_code == 403
        assert gateway.patch(f"{ADMIN}/users/{user.id}", json={"role": "admin"}, headers=fresh).status_code == 403
    else:
        assert refreshed.status_code == 401
    assert find_user(gateway, root, user.email)["role"] == ("user" if change == "demotion" else "admin")


def test_the_last_active_admin_can_be_neither_demoted_nor_deactivated(gateway: Client, root: Account) -> None:
    others = gateway.get(f"{ADMIN}/users", params={"role": "admin", "active": "true", "limit": 100}, headers=root.headers).json()["items"]
    for admin in others:
        if admin["id"] != root.id:
            assert gateway.patch(f"{ADMIN}/users/{admin['id']}", json={"role": "user"}, headers=root.headers).status_code == 200
    for change in ({"role": "user"}, {"active": False}):
        response = gateway.patch(f"{ADMIN}/users/{root.id}", json=change, headers=root.headers)
        assert response.status_code == 409
        assert response.headers["Content-Type"] == "application/problem+json"
    assert sign_in(gateway, ADMIN_EMAIL, ADMIN_PASSWORD).user["role"] == "admin"


def test_stats_match_the_users_list(gateway: Client, root: Account) -> None:
    created = [sign_up(gateway) for _ in range(3)]
    eventually(lambda: [find_user(gateway, root, user.email) for user in created], lambda found: all(found))
    listed = gateway.get(f"{ADMIN}/users", params={"limit": 1}, headers=root.headers).json()["total"]
    active = gateway.get(f"{ADMIN}/users", params={"limit": 1, "active": "true"}, headers=root.headers).json()["total"]
    admins = gateway.get(f"{ADMIN}/users", params={"limit": 1, "role": "admin"}, headers=root.headers).json()["total"]
    stats = gateway.get(f"{ADMIN}/stats", headers=root.headers).json()
    assert stats["users"] == {"total": listed, "active": active, "admins": admins}
    assert stats["events"]["processed"] > 0


def test_each_action_is_audited_once_newest_first(gateway: Client, root: Account) -> None:
    user = sign_up(gateway)
    gateway.patch("/api/v1/auth/me", json={"name": "Renamed Once"}, headers=user.headers)
    entries, _ = eventually(
        lambda: gateway.get(f"{ADMIN}/audit", params={"subject_id": user.id}, headers=root.headers).json()["items"],
        lambda items: len(items) >= 3,
    )
    assert entries[0]["type"] == "user.updated"
    assert sorted(entry["type"] for entry in entries[1:]) == ["user.email_verification_requested", "user.registered"]
    assert "#token=" not in json.dumps(entries)  # a link's token never travels in an event
    assert entries[0]["actor_id"] == user.id and entries[0]["summary"] == "changed name"
    assert [entry["time"] for entry in entries] == sorted((entry["time"] for entry in entries), reverse=True)


def test_task_counts_and_statistics_follow_the_tasks_created(gateway: Client, root: Account) -> None:
    owner = sign_up(gateway)
    before = gateway.get(f"{ADMIN}/stats", headers=root.headers).json()["tasks"]
    for status in ("todo", "todo", "in_progress", "done"):
        assert gateway.post("/api/v1/tasks", json={"title": "Counted", "status": status}, headers=owner.headers).status_code == 201
    found, _ = eventually(lambda: find_user(gateway, root, owner.email), lambda user: user is not None and user["task_count"] == 4)
    after = gateway.get(f"{ADMIN}/stats", headers=root.headers).json()["tasks"]
    assert after["total"] - before["total"] >= 4
    for status, created in (("todo", 2), ("in_progress", 1), ("done", 1)):
        assert after["by_status"][status] - before["by_status"][status] >= created
    assert found["task_count"] == 4
