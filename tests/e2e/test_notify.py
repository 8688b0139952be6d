"""The notify contract through the gateway (DESIGN §4 notify, issue 7): auth's real events reach
the notify worker, which fills the inbox and writes the mail to the system's Maildir (no
``SMTP_URL`` in the test system); tasks created through the gateway get their reminders."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.support.accounts import PASSWORD, Account, sign_in, sign_up
from tests.support.events import EventProbe
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.mail import VERIFY_SUBJECT, mails_to, verification_token, verify_email
from tests.support.processes import wait_for
from tests.support.system import Client, System

pytestmark = pytest.mark.e2e
INBOX = "/api/v1/notifications"


def inbox(gateway: Client, account: Account, query: str = "") -> dict[str, Any]:
    response = gateway.get(f"{INBOX}{query}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_inbox(gateway: Client, account: Account, count: int) -> list[dict[str, Any]]:
    wait_for(lambda: inbox(gateway, account)["total"] >= count, timeout=30, interval=0.25, what=f"{count} notification(s)")
    return inbox(gateway, account)["items"]


def of_kind(items: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [item for item in items if item["kind"] == kind]
    return found


def change_user(system: System, user_id: str, **change: Any) -> None:
    """What the admin service does for PATCH /admin/users/{id}: auth's internal API, as an admin."""
    admin = sign_in(Client(system.gateway_url), ADMIN_EMAIL, ADMIN_PASSWORD)
    response = requests.patch(f"{system.service_url('auth')}/internal/users/{user_id}", json=change,
                              headers=admin.headers, timeout=30)
    assert response.status_code == 200, response.text


def test_register_brings_a_welcome_and_mails_only_the_verification_link_until_it_is_opened(
    gateway: Client, system: System, events: EventProbe
) -> None:
    account = sign_up(gateway, name="Welcome E2E")
    items = wait_for_inbox(gateway, account, 2)
    welcome, verify = of_kind(items, "welcome"), of_kind(items, "verify_email")
    assert welcome["title"] == "Welcome to TaskFlow" and verify["title"] == VERIFY_SUBJECT
    assert welcome["subject_id"] == account.id and welcome["read_at"] is None and welcome["created_at"].endswith("Z")
    assert "#token=" not in verify["body"]  # the link is in the mail only

    token = verification_token(system, account.email)
    [mail] = mails_to(system, account.email)  # the welcome is in-app only: the address is not verified yet
    assert mail["To"] == account.email  # to a maybe-stranger: no name the account chose
    assert "Welcome E2E" not in mail.get_body(("plain",)).get_content()
    [sent] = events.wait_for(lambda event: event["type"] == "notification.sent" and event["subject"] == welcome["id"])
    assert sent["data"]["channels"] == ["in_app"]

    assert gateway.post("/api/v1/auth/verify-email", json={"token": token}).status_code == 204
    events.wait_for(lambda event: event["type"] == "user.email_verified" and event["subject"] == account.id)
    change_user(system, account.id, role="admin")
    wait_for(lambda: any(mail["Subject"] == "Your role is now admin" for mail in mails_to(system, account.email)),
             timeout=30, interval=0.25, what="the first mail after the verification")


def test_mark_read_read_all_and_the_unread_filter(gateway: Client, system: System) -> None:
    account = sign_up(gateway)
    wait_for_inbox(gateway, account, 2)  # the welcome and the verification link
    change_user(system, account.id, role="admin")  # a third notification: the role change
    items = wait_for_inbox(gateway, account, 3)
    welcome, role_changed = of_kind(items, "welcome"), of_kind(items, "role_changed")
    assert role_changed["title"] == "Your role is now admin"
    assert inbox(gateway, account, "?unread=true")["total"] == 3

    response = gateway.post(f"{INBOX}/{welcome['id']}/read", headers=account.headers)
    assert response.status_code == 204
    unread = inbox(gateway, account, "?unread=true")
    assert welcome["id"] not in [item["id"] for item in unread["items"]] and unread["total"] == 2

    assert gateway.post(f"{INBOX}/read-all", headers=account.headers).status_code == 204
    assert inbox(gateway, account, "?unread=true") == {"items": [], "total": 0, "page": 1, "limit": 20}
    assert all(item["read_at"] for item in inbox(gateway, account)["items"])


def test_nobody_reads_or_marks_someone_elses_notifications(gateway: Client) -> None:
    owner, intruder = sign_up(gateway), sign_up(gateway)
    theirs = of_kind(wait_for_inbox(gateway, owner, 2), "welcome")
    wait_for_inbox(gateway, intruder, 2)
    response = gateway.post(f"{INBOX}/{theirs['id']}/read", headers=intruder.headers)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert theirs["id"] not in [item["id"] for item in inbox(gateway, intruder)["items"]]
    assert gateway.post(f"{INBOX}/read-all", headers=intruder.headers).status_code == 204
    assert inbox(gateway, owner, "?unread=true")["total"] == 2
    assert gateway.get(INBOX).status_code == 401
    assert gateway.get(f"{INBOX}?limit=500", headers=owner.headers).status_code == 422


def test_a_deactivated_user_is_refused_and_mailed_nothing_more(gateway: Client, system: System) -> None:
    account = sign_up(gateway)
    verify_email(gateway, system, account)
    wait_for_inbox(gateway, account, 2)
    change_user(system, account.id, active=False)
    wait_for(lambda: gateway.get(INBOX, headers=account.headers).status_code == 403, timeout=30, interval=0.25,
             what="notify refusing the deactivated user")
    change_user(system, account.id, role="admin")  # changed while deactivated: no notification
    change_user(system, account.id, active=True)
    # The tokens from before the deactivation stay dead (issue 17 §1); a new sign-in is served.
    wait_for(lambda: gateway.get(INBOX, headers=account.headers).status_code == 401, timeout=30, interval=0.25,
             what="notify refusing the token from before the deactivation")
    account = sign_in(gateway, account.email, PASSWORD)
    wait_for(lambda: gateway.get(INBOX, headers=account.headers).status_code == 200, timeout=30, interval=0.25,
             what="notify serving the reactivated user")
    items = wait_for_inbox(gateway, account, 3)
    assert sorted(item["kind"] for item in items) == ["reactivated", "verify_email", "welcome"]
    wait_for(lambda: any(mail["Subject"] == "Your account is active again" for mail in mails_to(system, account.email)),
             timeout=30, interval=0.25, what="the reactivation mail")
    assert all(mail["Subject"] != "Your role is now admin" for mail in mails_to(system, account.email))


def test_a_task_due_soon_gets_one_reminder_in_the_inbox_and_the_mail(gateway: Client, system: System) -> None:
    owner = sign_up(gateway)
    verify_email(gateway, system, owner)
    due = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    task = gateway.post("/api/v1/tasks", json={"title": "Ship the release", "due_date": due}, headers=owner.headers).json()
    wait_for(
        lambda: any(item["kind"] == "reminder" for item in inbox(gateway, owner)["items"]),
        timeout=60, interval=0.5, what="the reminder",
    )
    wait_for(lambda: any("Reminder" in mail["Subject"] for mail in mails_to(system, owner.email)), timeout=30,
             what="the reminder mail")
    reminders = [item for item in inbox(gateway, owner)["items"] if item["kind"] == "reminder"]
    assert [item["subject_id"] for item in reminders] == [task["id"]]
    assert "Ship the release" in reminders[0]["title"] + reminders[0]["body"]


def test_a_completed_task_gets_no_reminder(gateway: Client, system: System) -> None:
    owner = sign_up(gateway)
    far = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    task = gateway.post("/api/v1/tasks", json={"title": "Later", "due_date": far}, headers=owner.headers).json()
    soon = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    done = gateway.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done", "due_date": soon}, headers=owner.headers)
    assert done.status_code == 200
    other = gateway.post("/api/v1/tasks", json={"title": "Sooner", "due_date": soon}, headers=owner.headers).json()
    wait_for(lambda: any(item["subject_id"] == other["id"] for item in inbox(gateway, owner)["items"]), timeout=60,
             interval=0.5, what="the open task's reminder")
    assert all(item["subject_id"] != task["id"] for item in inbox(gateway, owner)["items"])


def _feed_events(response, until: Callable[[list[dict[str, str]]], bool], seconds: float = 10) -> list[dict[str, str]]:
    """Read SSE events from a streamed response until ``until(events)`` or ``seconds`` pass."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if "data" in fields:
                events.append(fields)
                if until(events):
                    break
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
        if time.monotonic() > deadline:
            break
    return events


def test_the_live_feed_streams_through_the_gateway_and_a_reconnection_loses_nothing(gateway: Client) -> None:
    account = sign_up(gateway)
    stream_url = "/api/v1/notifications/stream"
    with gateway.get(stream_url, headers=account.headers, stream=True, timeout=30) as first:
        assert first.status_code == 200
        assert first.headers["Content-Type"].startswith("text/event-stream")
        created = gateway.post("/api/v1/tasks", json={"title": "streamed"}, headers=account.headers)
        assert created.status_code == 201
        seen = _feed_events(first, lambda events: any(e.get("event") == "task" for e in events))
    task_events = [e for e in seen if e.get("event") == "task"]
    assert json.loads(task_events[0]["data"])["task"]["title"] == "streamed"

    # Away from the stream: a change, then, longer after it than a new stream looks back (5 s), a
    # reconnection from the last event seen, which must still bring it.
    changed = gateway.patch(f"/api/v1/tasks/{created.json()['id']}", json={"title": "changed meanwhile"},
                            headers=account.headers)
    assert changed.status_code == 200
    time.sleep(8)
    with gateway.get(stream_url, headers={**account.headers, "Last-Event-ID": seen[-1]["id"]}, stream=True,
                     timeout=30) as second:
        again = _feed_events(second, lambda events: any("changed meanwhile" in e["data"] for e in events))
    assert any(json.loads(e["data"]).get("task", {}).get("title") == "changed meanwhile" for e in again)
