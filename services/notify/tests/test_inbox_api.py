"""The inbox API (DESIGN §4 notify): own notifications only, newest first, paginated, read marks."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from taskflow_notify import Notify
from taskflow_notify.messages import NewNotification
from taskflow_notify.notifications import notification_id

from tests.support.tokens import Issuer

from .conftest import new_id, user_event

INBOX = "/api/v1/notifications"
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def give(notify: Notify) -> Callable[..., str]:
    """Put a notification in a user's inbox (as the worker would); returns its id."""

    def make(user_id: str, minute: int = 0, title: str = "Hello") -> str:
        key = f"test:{uuid.uuid4()}"
        notify.notifications.create(NewNotification(
            key=key, user_id=user_id, kind="reminder", title=title, body=f"{title}, body", subject_id="task-1",
            actor_id=None, created_at=START + timedelta(minutes=minute),
        ))
        return notification_id(key)

    return make


def test_the_inbox_lists_own_notifications_newest_first_paginated(
    client: FlaskClient, issuer: Issuer, give: Callable[..., str]
) -> None:
    me, someone_else = new_id(), new_id()
    ids = [give(me, minute, f"n{minute}") for minute in range(5)]
    give(someone_else, 10)
    first = client.get(f"{INBOX}?limit=2", headers=issuer.headers(me))
    assert first.status_code == 200
    body = first.json
    assert (body["total"], body["page"], body["limit"]) == (5, 1, 2)
    assert [item["id"] for item in body["items"]] == [ids[4], ids[3]]
    assert body["items"][0] == {
        "id": ids[4], "kind": "reminder", "title": "n4", "body": "n4, body",
        "created_at": "2026-11-01T09:04:00Z", "read_at": None, "subject_id": "task-1", "due_date": None,
    }
    last = client.get(f"{INBOX}?limit=2&page=3", headers=issuer.headers(me)).json
    assert [item["id"] for item in last["items"]] == [ids[0]]


def test_read_marks_one_and_the_unread_filter_hides_it(client: FlaskClient, issuer: Issuer, give: Callable[..., str]) -> None:
    me = new_id()
    older, newer = give(me, 1), give(me, 2)
    response = client.post(f"{INBOX}/{older}/read", headers=issuer.headers(me))
    assert response.status_code == 204 and response.data == b""
    items = client.get(INBOX, headers=issuer.headers(me)).json["items"]
    read_at = {item["id"]: item["read_at"] for item in items}
    assert read_at[newer] is None and read_at[older].endswith("Z")
    unread = client.get(f"{INBOX}?unread=true", headers=issuer.headers(me)).json
    assert [item["id"] for item in unread["items"]] == [newer] and unread["total"] == 1
    # Marking it again is fine and keeps the first time.
    assert client.post(f"{INBOX}/{older}/read", headers=issuer.headers(me)).status_code == 204
    again = client.get(INBOX, headers=issuer.headers(me)).json["items"]
    assert {item["id"]: item["read_at"] for item in again}[older] == read_at[older]


def test_read_all_marks_every_own_notification(client: FlaskClient, issuer: Issuer, give: Callable[..., str]) -> None:
    me, someone_else = new_id(), new_id()
    for minute in range(3):
        give(me, minute)
    theirs = give(someone_else, 5)
    assert client.post(f"{INBOX}/read-all", headers=issuer.headers(me)).status_code == 204
    assert client.get(f"{INBOX}?unread=true", headers=issuer.headers(me)).json["total"] == 0
    assert client.get(INBOX, headers=issuer.headers(me)).json["total"] == 3
    [their_item] = client.get(f"{INBOX}?unread=1", headers=issuer.headers(someone_else)).json["items"]
    assert their_item["id"] == theirs


def test_another_users_notification_cannot_be_read_or_marked(
    client: FlaskClient, issuer: Issuer, give: Callable[..., str]
) -> None:
    owner, intruder = new_id(), new_id()
    theirs = give(owner)
    response = client.post(f"{INBOX}/{theirs}/read", headers=issuer.headers(intruder))
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert client.get(INBOX, headers=issuer.headers(intruder)).json == {"items": [], "total": 0, "page": 1, "limit": 20}
    client.post(f"{INBOX}/read-all", headers=issuer.headers(intruder))
    assert client.get(f"{INBOX}?unread=true", headers=issuer.headers(owner)).json["total"] == 1


@pytest.mark.parametrize("identifier", ["not-an-id", str(uuid.uuid4()), "0" * 24, "%00", "A" * 300])
def test_unknown_or_malformed_ids_are_404(client: FlaskClient, issuer: Issuer, identifier: str) -> None:
    response = client.post(f"{INBOX}/{identifier}/read", headers=issuer.headers(new_id()))
    assert response.status_code == 404
    assert response.json["status"] == 404


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "page=0", "unread=maybe", "sort=title", "limit=2&limit=3"])
def test_bad_queries_are_422(client: FlaskClient, issuer: Issuer, query: str) -> None:
    response = client.get(f"{INBOX}?{query}", headers=issuer.headers(new_id()))
    assert response.status_code == 422
    assert response.json["errors"]


@pytest.mark.parametrize(("method", "path"), [("GET", INBOX), ("POST", f"{INBOX}/read-all"), ("POST", f"{INBOX}/x/read")])
def test_every_route_needs_a_token(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_deactivated_user_is_refused(client: FlaskClient, issuer: Issuer, notify: Notify) -> None:
    user_id = new_id()
    notify.deactivated.handle(user_event("user.deactivated", user_id, active=False, version=2))
    response = client.get(INBOX, headers=issuer.headers(user_id))
    assert response.status_code == 403


def test_the_openapi_document_lists_the_three_operations(client: FlaskClient) -> None:
    paths = client.get(f"{INBOX}/openapi.json").json["paths"]
    assert set(paths) == {INBOX, f"{INBOX}/read-all", f"{INBOX}/{{notification_id}}/read"}
    assert "unread" in [parameter["name"] for parameter in paths[INBOX]["get"]["parameters"]]
