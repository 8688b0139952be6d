"""What each kind of notification says, in the inbox and by email.

Kinds (the catalog's ``NotificationData.kind``): ``welcome`` (on ``user.registered``),
``role_changed`` (an admin changed the user's role), ``reactivated`` (an admin reactivated the
account), ``reminder`` (an open task is about to be due) and ``verify_email`` (a verification
link: its email carries the link, the inbox item does not). Each is identified by a *key* naming
what it is about, so the same cause never yields two notifications (see
:func:`.notifications.notification_id`). Emails are rendered from ``templates/email.txt`` and
``templates/email.html`` (Jinja2, HTML autoescaped), with a ``Message-ID`` derived from the
notification's id: every attempt to send one notification carries the same id (RFC 5322 §3.6.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from taskflow_common.email_links import link_token

Kind = Literal["welcome", "reminder", "role_changed", "reactivated", "verify_email"]
CHANNELS = ("in_app", "email")
TITLE_LENGTH = 200


@dataclass(frozen=True)
class NewNotification:
    """A notification to create. ``key`` names its cause; ``subject_id`` is a task or the user;
    ``due_date`` is a reminder's due time (aware, UTC), None for the other kinds."""

    key: str
    user_id: str
    kind: Kind
    title: str
    body: str
    subject_id: str
    actor_id: str | None
    created_at: datetime
    due_date: datetime | None = None


def _shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def welcome(user: dict[str, Any], *, at: datetime, actor_id: str | None) -> NewNotification:
    """For a ``user.registered`` snapshot: one per user, whatever the event."""
    return NewNotification(
        key=f"welcome:{user['id']}",
        user_id=user["id"],
        kind="welcome",
        title="Welcome to TaskFlow",
        body=f"Your account {user['email']} is ready. Add your first task: TaskFlow reminds you before it is due.",
        subject_id=user["id"],
        actor_id=actor_id,
        created_at=at,
    )


def role_changed(user: dict[str, Any], *, event_id: str, at: datetime, actor_id: str | None) -> NewNotification:
    """For a ``user.role_changed`` snapshot: one per change (keyed by the event)."""
    previous = user.get("previous_role")
    change = f"from {previous} to {user['role']}" if previous else f"to {user['role']}"
    return NewNotification(
        key=f"role_changed:{event_id}",
        user_id=user["id"],
        kind="role_changed",
        title=f"Your role is now {user['role']}",
        body=f"An administrator changed your role {change}.",
        subject_id=user["id"],
        actor_id=actor_id,
        created_at=at,
    )


def reactivated(user: dict[str, Any], *, event_id: str, at: datetime, actor_id: str | None) -> NewNotification:
    """For a ``user.activated`` snapshot: one per reactivation (keyed by the event)."""
    return NewNotification(
        key=f"reactivated:{event_id}",
        user_id=user["id"],
        kind="reactivated",
        title="Your account is active again",
        body="An administrator reactivated your account: you can sign in and use TaskFlow again.",
        subject_id=user["id"],
        actor_id=actor_id,
        created_at=at,
    )


def verify_email(user: dict[str, Any], *, event_id: str, at: datetime, actor_id: str | None) -> NewNotification:
    """For a ``user.email_verification_requested`` snapshot: one per link (keyed by the event)."""
    return NewNotification(
        key=f"verify_email:{event_id}",
        user_id=user["id"],
        kind="verify_email",
        title="Confirm your email address",
        body=f"We emailed a link to {user['email']}: open it to confirm the address is yours. "
        "Until then TaskFlow notifies you here only, not by email.",
        subject_id=user["id"],
        actor_id=actor_id,
        created_at=at,
    )


def reminder(task_id: str, owner_id: str, title: str, due: datetime, *, at: datetime) -> NewNotification:
    """For a task due at ``due`` (aware, UTC): one per task and due date (the key holds both).

    The body names the due time in UTC, saying so: an email cannot know its reader's time zone
    (an account has none). The inbox item also carries ``due_date``, and the web client shows the
    body with that exact ``YYYY-MM-DD HH:MM UTC`` text replaced by the time in the browser's zone.
    """
    due_text = due.strftime("%Y-%m-%d %H:%M UTC")
    return NewNotification(
        key=f"reminder:{task_id}:{due.isoformat(timespec='milliseconds')}",
        user_id=owner_id,
        kind="reminder",
        title=_shorten(f"Reminder: {title}", TITLE_LENGTH),
        body=f"Your task “{title}” is due {due_text}.",
        subject_id=task_id,
        actor_id=None,
        created_at=at,
        due_date=due,
    )


def _duration(minutes: float) -> str:
    delta = timedelta(minutes=minutes)
    if delta >= timedelta(hours=1) and delta % timedelta(hours=1) == timedelta(0):
        hours = delta // timedelta(hours=1)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    whole = round(minutes)
    return f"{whole} minute{'s' if whole != 1 else ''}"


def _recipient(address: str, display_name: str) -> Address:
    """The To address: parsed (and so checked) as an RFC 5322 addr-spec when ASCII; an RFC 6532
    address with a non-ASCII local part, which the parser refuses, is put together from its parts."""
    if address.isascii():
        return Address(display_name=display_name, addr_spec=address)
    local_part, _, domain = address.rpartition("@")
    if not local_part or not domain or "@" in local_part or any(char.isspace() for char in address):
        raise ValueError(f"not an email address: {address!r}")
    return Address(display_name=display_name, username=local_part, domain=domain)


class EmailComposer:
    """Renders a stored notification into an email to its recipient.

    Args:
        sender: the From header (``MAIL_FROM``), e.g. ``TaskFlow <no-reply@example.com>``.
        lead_minutes: the reminder lead time, mentioned in the welcome email.
        link_key: the key of verification links (:mod:`taskflow_common.email_links`).
    """

    def __init__(self, sender: str, *, lead_minutes: float, link_key: bytes) -> None:
        self.sender = sender
        self.link_key = link_key
        self.domain = parseaddr(sender)[1].rpartition("@")[2] or "taskflow.localhost"
        self.lead = _duration(lead_minutes)
        self.templates = Environment(
            loader=PackageLoader("taskflow_notify", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def message_id(self, notification_id: str) -> str:
        """The stable ``Message-ID`` of a notification's email."""
        return f"<{notification_id}@{self.domain}>"

    def verification_url(self, user_id: str, link: dict[str, str]) -> str:
        """The URL of a verification link (``page``, ``nonce``, ``email``, ``expires_at`` as the
        event gave them), its token derived with the key."""
        token = link_token(self.link_key, user_id=user_id, email=link["email"], nonce=link["nonce"],
                           expires_at=link["expires_at"])
        return f"{link['page']}#token={token}"

    def compose(self, notification: dict[str, Any], recipient: dict[str, Any], *, link: dict[str, str] | None = None) -> EmailMessage:
        """The email for ``notification`` (as stored) to ``recipient`` (``email``, ``name``);
        ``link`` is a verification email's (see :meth:`verification_url`).

        A verification email may go to a stranger's address: it names nobody (no display name, a
        plain greeting) so an account's chosen name is never put in front of them. An address
        with a non-ASCII local part is written for SMTPUTF8 (RFC 6531)."""
        verifying = notification["kind"] == "verify_email"
        context = {
            "link": self.verification_url(notification["user_id"], link) if link else None,
            "name": None if verifying else recipient["name"],
            "email": recipient["email"],
            "title": notification["title"],
            "body": notification["body"],
            "kind": notification["kind"],
            "lead": self.lead,
        }
        message = EmailMessage(policy=policy.default if recipient["email"].isascii() else policy.SMTPUTF8)
        message["From"] = self.sender
        message["To"] = _recipient(recipient["email"], "" if verifying else recipient["name"])
        message["Subject"] = notification["title"]
        message["Date"] = format_datetime(notification["created_at"])
        message["Message-ID"] = self.message_id(notification["_id"])
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        message.set_content(self.templates.get_template("email.txt").render(context))
        message.add_alternative(self.templates.get_template("email.html").render(context), subtype="html")
        return message
