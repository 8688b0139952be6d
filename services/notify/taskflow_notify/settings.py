"""Settings of the notify service, read from the environment (DESIGN §7)."""

from __future__ import annotations

import os
from email.utils import parseaddr
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator
from taskflow_common import email_links
from taskflow_common.settings import Environment, ServiceSettings

from .mail import SmtpEndpoint

DEFAULT_MAIL_FROM = "TaskFlow <no-reply@taskflow.localhost>"
"""``MAIL_FROM`` outside production: a domain no relay accepts mail from, so production needs its own."""
EXAMPLE_MAIL_DOMAIN = "taskflow.example.com"
"""The domain of ``MAIL_FROM`` in k8s/overlays/prod: an operator must set their own."""


def _default_mail_dir() -> Path:
    return Path(os.environ.get("TASKFLOW_VAR", "var")) / "mail"


class NotifySettings(ServiceSettings):
    """The shared settings plus notify's own; its database is ``<MONGODB_DB_PREFIX>notify``.

    Attributes:
        smtp_url: ``SMTP_URL``; where email goes (schemes in :mod:`.mail`). Unset: a Maildir.
            Required in production. A secret (it may hold a password): never logged.
        smtp_ca_file: ``SMTP_CA_FILE``; a CA bundle to verify the SMTP server with instead of
            the system's.
        smtp_timeout_seconds: ``SMTP_TIMEOUT_SECONDS``; bound on connecting and on each command.
        mail_from: ``MAIL_FROM``; the From header of every email (``Name <address>`` or an
            address). Required in production, where it must be an address at a real domain of
            the operator's: not :data:`DEFAULT_MAIL_FROM`'s nor the overlay's placeholder domain.
        mail_dir: ``MAIL_DIR``; the Maildir used without ``SMTP_URL`` (``$TASKFLOW_VAR/mail``).
        reminder_lead_minutes: ``REMINDER_LEAD_MINUTES``; an open task gets its reminder this
            long before it is due (fractions allowed).
        reminder_scan_seconds: ``REMINDER_SCAN_SECONDS``; how often the scheduler looks for
            reminders that are due.
        mail_poll_seconds: ``MAIL_POLL_SECONDS``; how often the mailer looks for pending email.
        mail_retry_seconds, mail_retry_max_seconds: ``MAIL_RETRY_SECONDS``,
            ``MAIL_RETRY_MAX_SECONDS``; the first back-off after a failed attempt, doubling up to
            the maximum.
        mail_max_attempts: ``MAIL_MAX_ATTEMPTS``; attempts before an email is given up as failed.
        mail_max_per_recipient_per_day: ``MAIL_MAX_PER_RECIPIENT_PER_DAY``; emails one address
            gets per UTC day at most; past it, notifications are in-app only.
        email_link_key_file: ``EMAIL_LINK_KEY_FILE``; the key auth and notify derive the tokens
            of verification links with (:mod:`taskflow_common.email_links`); generated outside
            production.
        streams_per_user: ``STREAMS_PER_USER``; live streams (``/notifications/stream``) one user
            may have open at once, across every process; one more is refused with 429.
    """

    service: ClassVar[str] = "notify"

    smtp_url: SecretStr | None = None
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    mail_from: str = DEFAULT_MAIL_FROM
    mail_dir: Path = Field(default_factory=_default_mail_dir)
    reminder_lead_minutes: float = Field(default=60.0, ge=0)
    reminder_scan_seconds: float = Field(default=10.0, gt=0)
    mail_poll_seconds: float = Field(default=1.0, gt=0)
    mail_retry_seconds: float = Field(default=30.0, gt=0)
    mail_retry_max_seconds: float = Field(default=3600.0, gt=0)
    mail_max_attempts: int = Field(default=12, ge=1)
    mail_max_per_recipient_per_day: int = Field(default=20, ge=1)
    email_link_key_file: Path = Field(default_factory=email_links.default_key_file)
    streams_per_user: int = Field(default=10, ge=1, le=100)

    @property
    def smtp(self) -> str | None:
        """The SMTP URL in clear, for the transport only."""
        return self.smtp_url.get_secret_value() if self.smtp_url else None

    @model_validator(mode="after")
    def _valid_mail_settings(self) -> NotifySettings:
        if self.smtp:
            SmtpEndpoint.parse(self.smtp)  # fail at start-up, not at the first email
        elif self.taskflow_env is Environment.PRODUCTION:
            raise ValueError("SMTP_URL is required in production (the Maildir is for development)")
        if self.taskflow_env is Environment.PRODUCTION:
            self._check_production_sender()
        email_links.check_key_file(self.email_link_key_file, production=self.taskflow_env is Environment.PRODUCTION)
        return self

    def _check_production_sender(self) -> None:
        """Refuse a From that relays reject: unset, without a domain, or a placeholder's."""
        if "mail_from" not in self.model_fields_set:
            raise ValueError("MAIL_FROM is required in production (an address at your own domain)")
        _, address = parseaddr(self.mail_from)
        domain = address.rpartition("@")[2].rstrip(".").lower()
        if "@" not in address or "." not in domain:
            raise ValueError("MAIL_FROM must hold an address with a domain, e.g. TaskFlow <no-reply@example.org>")
        if domain == EXAMPLE_MAIL_DOMAIN or domain.endswith((".localhost", ".local", ".test", ".invalid")):
            raise ValueError("MAIL_FROM must not be a placeholder or local domain in production")
