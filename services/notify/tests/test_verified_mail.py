"""Email only to verified addresses, at most a few a day (DESIGN §4 notify; issue 17 §5): the
verification email itself carries its link; everything else waits for ``user.email_verified``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from taskflow_notify import Notify
from taskflow_notify.notifications import notification_id

from .conftest import SmtpServer, new_id, task_event, user_event

LINK = "http://127.0.0.1:8000/verify-email#token=" + "t" * 43


def _delivery(notify: Notify, key: str) -> dict:
    return notify.mongo.db["deliveries"].find_one({"_id": notification_id(key)})


def test_an_unverified_address_gets_the_verification_email_and_nothing_else(
    make_notify: Callable[..., Notify], smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    user_id = new_id()
    registered = user_event("user.registered", user_id, email_verified=False)
    requested = user_event("user.email_verification_requested", user_id, email_verified=False,
                           verification_url=LINK, verification_expires_at="2026-12-04T00:00:00.000Z")
    notify.handlers.handle_user_registered(registered)
    notify.handlers.handle_user_email_verification_requested(requested)
    notify.mailer.send_due()
    [message] = smtp.catcher.to(f"{user_id}@example.com")
    assert message["Subject"] == "Confirm your email address"
    assert LINK in message.get_body(("plain",)).get_content() and LINK in message.get_body(("html",)).get_content()
    verification = _delivery(notify, f"verify_email:{requested.id}")
    assert verification["status"] == "sent" and verification["link"] is None  # the secret is not kept
    welcome = _delivery(notify, f"welcome:{user_id}")
    assert (welcome["status"], welcome["last_error"]) == ("skipped", "address not verified")
    inbox = notify.mongo.db["notifications"].find({"user_id": user_id})
    assert {item["kind"] for item in inbox} == {"welcome", "verify_email"}
    assert all(LINK not in item["body"] for item in notify.mongo.db["notifications"].find({"user_id": user_id}))


def test_once_verified_the_user_is_emailed(make_notify: Callable[..., Notify], smtp: SmtpServer) -> None:
    notify = make_notify(smtp_url=smtp.url, reminder_lead_minutes=60)
    user_id, task_id = new_id(), new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id, email_verified=False))
    notify.handlers.handle_user_email_verified(user_event("user.email_verified", user_id, version=2))
    due = datetime.now(UTC) + timedelta(minutes=30)
    notify.handlers.handle_task_event(task_event("task.created", task_id, user_id, due=due))
    notify.reminders.send_due()
    notify.mailer.send_due()
    subjects = sorted(message["Subject"] for message in smtp.catcher.to(f"{user_id}@example.com"))
    assert subjects == ["Reminder: Write the report", "Welcome to TaskFlow"]


def test_an_address_gets_at_most_the_daily_limit_of_emails(make_notify: Callable[..., Notify], smtp: SmtpServer) -> None:
    notify = make_notify(smtp_url=smtp.url, mail_max_per_recipient_per_day=2)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    for version in (2, 3, 4):
        notify.handlers.handle_user_role_changed(
            user_event("user.role_changed", user_id, version=version, role="admin" if version % 2 else "user")
        )
    notify.mailer.send_due()
    assert len(smtp.catcher.to(f"{user_id}@example.com")) == 2
    outcomes = [delivery["status"] for delivery in notify.mongo.db["deliveries"].find({"user_id": user_id})]
    assert sorted(outcomes) == ["sent", "sent", "skipped", "skipped"]
    assert notify.mongo.db["notifications"].count_documents({"user_id": user_id}) == 4  # all in the inbox
