"""Notifications caused by ``user.*`` events, published to the real broker and delivered by email
to a real SMTP server: welcome, role changes, reactivation; never to a deactivated user."""

from __future__ import annotations

from collections.abc import Callable

from taskflow_notify import Notify
from taskflow_notify.notifications import notification_id

from .conftest import Bus, SmtpServer, Workers, eventually, new_id, user_event


def inbox(notify: Notify, user_id: str) -> list[dict]:
    return notify.notifications.page(user_id, unread_only=False, skip=0, limit=100)[0]


def delivery(notify: Notify, key: str) -> dict | None:
    return notify.mongo.db["deliveries"].find_one({"_id": notification_id(key)})


def test_registration_sends_a_welcome_email_and_creates_an_inbox_item(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    workers.start(notify)
    user_id = new_id()
    bus.publish(user_event("user.registered", user_id, email="ada@example.com", name="Ada Lovelace"))

    eventually(lambda: smtp.catcher.to("ada@example.com"), what="the welcome email")
    [email] = smtp.catcher.to("ada@example.com")
    assert email["Subject"] == "Welcome to TaskFlow"
    assert email["To"] == "Ada Lovelace <ada@example.com>"
    assert email["Message-ID"] == f"<{notification_id(f'welcome:{user_id}')}@taskflow.localhost>"
    assert email["Auto-Submitted"] == "auto-generated"
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert "Hi Ada Lovelace," in text and "ada@example.com" in text
    assert "<p>Hi Ada Lovelace,</p>" in html
    [item] = inbox(notify, user_id)
    assert (item["kind"], item["title"], item["subject_id"], item["read_at"]) == ("welcome", "Welcome to TaskFlow", user_id, None)
    eventually(lambda: delivery(notify, f"welcome:{user_id}")["status"] == "sent", what="the delivery recorded")
    recorded = delivery(notify, f"welcome:{user_id}")
    assert recorded["attempts"] == 1 and recorded["sent_at"] is not None and recorded["last_error"] is None


def test_the_same_event_delivered_twice_gives_one_notification(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    workers.start(notify)
    user_id = new_id()
    registered = user_event("user.registered", user_id)
    promoted = user_event("user.role_changed", user_id, role="admin", previous_role="user", version=2)
    bus.publish(registered, promoted, registered, promoted)
    # A handler re-run after a crash (its event not yet recorded as processed) changes nothing either.
    notify.handlers.handle_user_registered(registered)
    notify.handlers.handle_user_role_changed(promoted)

    eventually(lambda: len(smtp.catcher.to(f"{user_id}@example.com")) >= 2, what="two emails")
    eventually(lambda: notify.mongo.db["processed_events"].count_documents({}) >= 2, what="both events recorded")
    kinds = sorted(item["kind"] for item in inbox(notify, user_id))
    assert kinds == ["role_changed", "welcome"]
    assert notify.mongo.db["deliveries"].count_documents({"user_id": user_id}) == 2
    assert len(smtp.catcher.to(f"{user_id}@example.com")) == 2


def test_role_change_and_reactivation_are_notified(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    workers.start(notify)
    user_id, admin_id = new_id(), new_id()
    bus.publish(
        user_event("user.registered", user_id),
        user_event("user.role_changed", user_id, role="admin", previous_role="user", version=2, actor_id=admin_id),
    )
    # Emails still pending when the deactivation arrives would be cancelled: let them go first.
    eventually(lambda: len(smtp.catcher.to(f"{user_id}@example.com")) == 2, what="two emails")
    bus.publish(
        user_event("user.deactivated", user_id, role="admin", active=False, version=3, actor_id=admin_id),
        user_event("user.activated", user_id, role="admin", active=True, version=4, actor_id=admin_id),
    )
    eventually(lambda: len(inbox(notify, user_id)) == 3, what="three notifications")
    by_kind = {item["kind"]: item for item in inbox(notify, user_id)}
    assert by_kind["role_changed"]["title"] == "Your role is now admin"
    assert by_kind["role_changed"]["body"] == "An administrator changed your role from user to admin."
    assert by_kind["role_changed"]["actor_id"] == admin_id
    assert by_kind["reactivated"]["title"] == "Your account is active again"
    eventually(lambda: len(smtp.catcher.to(f"{user_id}@example.com")) == 3, what="three emails")


def test_a_deactivated_user_gets_nothing(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    user_id, late_id, admin_id = new_id(), new_id(), new_id()
    # Registered and deactivated before the worker runs: the pending welcome email is cancelled.
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    notify.handlers.handle_user_deactivated(user_event("user.deactivated", user_id, active=False, version=2))
    workers.start(notify)
    bus.publish(
        user_event("user.role_changed", user_id, role="admin", previous_role="user", active=False, version=3, actor_id=admin_id),
        # Out of order: the deactivation (v2) overtakes the registration (v1); no welcome.
        user_event("user.deactivated", late_id, active=False, version=2, actor_id=admin_id),
        user_event("user.registered", late_id, version=1),
    )
    eventually(lambda: notify.mongo.db["processed_events"].count_documents({}) >= 3, what="the events handled")
    eventually(lambda: delivery(notify, f"welcome:{user_id}")["status"] == "cancelled", what="the email cancelled")
    assert [item["kind"] for item in inbox(notify, user_id)] == ["welcome"]  # from before the deactivation
    assert inbox(notify, late_id) == []
    assert smtp.catcher.messages == []
    assert notify.mongo.db["recipients"].find_one({"_id": late_id})["version"] == 2
