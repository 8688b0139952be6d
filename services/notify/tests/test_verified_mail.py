"""Email only to verified addresses, at most a few a day (DESIGN §4 notify; issue 17 §5): the
verification email itself carries its link; everything else waits for ``user.email_verified``."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from taskflow_common.email_links import link_token, load_key
from taskflow_notify import Notify
from taskflow_notify.notifications import notification_id

from .conftest import SmtpServer, new_id, task_event, user_event

PAGE = "http://127.0.0.1:8000/verify-email"
EXPIRES = "2026-12-04T00:00:00.000Z"


def _delivery(notify: Notify, key: str) -> dict:
    return notify.mongo.db["deliveries"].find_one({"_id": notification_id(key)})


def test_an_unverified_address_gets_the_verification_email_and_nothing_else(
    make_notify: Callable[..., Notify], smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    user_id = new_id()
    registered = user_event("user.registered", user_id, email_verified=False)
    requested = user_event("user.email_verification_requested", user_id, email_verified=False,
                           verification_page=PAGE, verification_nonce="a-nonce", verification_expires_at=EXPIRES)
    key = load_key(notify.settings.email_link_key_file, generate_missing=False)
    link = f"{PAGE}#token=" + link_token(key, user_id=user_id, email=f"{user_id}@example.com", nonce="a-nonce", expires_at=EXPIRES)
    notify.handlers.handle_user_registered(registered)
    notify.handlers.handle_user_email_verification_requested(requested)
    notify.mailer.send_due()
    [message] = smtp.catcher.to(f"{user_id}@example.com")
    assert message["Subject"] == "Confirm your email address"
    assert link in message.get_body(("plain",)).get_content() and link in message.get_body(("html",)).get_content()
    assert message["To"] == f"{user_id}@example.com" and "Ada" not in message.get_body(("plain",)).get_content()
    verification = _delivery(notify, f"verify_email:{requested.id}")
    assert verification["status"] == "sent"
    assert link.partition("#token=")[2] not in str(notify.mongo.db["deliveries"].find_one({"_id": verification["_id"]}))
    welcome = _delivery(notify, f"welcome:{user_id}")
    assert (welcome["status"], welcome["last_error"]) == ("skipped", "address not verified")
    inbox = notify.mongo.db["notifications"].find({"user_id": user_id})
    assert {item["kind"] for item in inbox} == {"welcome", "verify_email"}
    assert all("#token=" not in item["body"] for item in notify.mongo.db["notifications"].find({"user_id": user_id}))


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


def test_an_address_with_a_non_ascii_local_part_is_mailed_over_smtputf8(make_notify: Callable[..., Notify], tmp_path) -> None:
    """RFC 6531/6532: register keeps such an address (NFC), so notify must be able to write to it."""
    notify = make_notify(mail_dir=tmp_path / "mail")
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id, email="josé@example.com"))
    assert notify.mailer.send_due() == 1
    [message] = mailbox.Maildir(tmp_path / "mail", create=False)
    assert "josé@example.com" in message.as_bytes().decode("utf-8")
    assert _delivery(notify, f"welcome:{user_id}")["status"] == "sent"


def test_mail_that_does_not_go_out_is_not_counted_against_the_daily_limit(
    make_notify: Callable[..., Notify], smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url, mail_max_per_recipient_per_day=1)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    smtp.stop()
    for minutes in range(3):  # three failed attempts while the server is down
        notify.mailer.send_due(datetime.now(UTC) + timedelta(hours=minutes))
    smtp.start()
    notify.mailer.send_due(datetime.now(UTC) + timedelta(hours=4))
    assert len(smtp.catcher.to(f"{user_id}@example.com")) == 1
    assert _delivery(notify, f"welcome:{user_id}")["status"] == "sent"
