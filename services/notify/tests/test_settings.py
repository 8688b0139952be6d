"""Notify's production settings refuse a sender that relays reject (issue 22 finding 2)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError
from taskflow_notify.settings import DEFAULT_MAIL_FROM, NotifySettings

PRODUCTION = {
    "taskflow_env": "production",
    "rabbitmq_url": "amqp://notify:secret@rabbitmq:5672/%2F",
    "smtp_url": "smtp://mail.example.org:587",
}


def test_production_needs_mail_from() -> None:
    with pytest.raises(ValidationError, match="MAIL_FROM is required in production"):
        NotifySettings(**PRODUCTION)


@pytest.mark.parametrize(
    "sender",
    [
        DEFAULT_MAIL_FROM,
        "TaskFlow <no-reply@taskflow.example.com>",
        "no-reply@mail.test",
        "TaskFlow",
        "TaskFlow <no-reply@localhost>",
    ],
)
def test_production_refuses_a_placeholder_local_or_domainless_sender(sender: str) -> None:
    with pytest.raises(ValidationError, match="MAIL_FROM must"):
        NotifySettings(**PRODUCTION, mail_from=sender)


@pytest.mark.parametrize("sender", ["TaskFlow <no-reply@tasks.example.org>", "no-reply@example.org"])
def test_production_takes_an_address_at_a_real_domain(sender: str, tmp_path: Path) -> None:
    key = tmp_path / "email-link.key"
    key.write_text(secrets.token_hex(32))
    assert NotifySettings(**PRODUCTION, mail_from=sender, email_link_key_file=key).mail_from == sender


def test_development_keeps_its_default_sender() -> None:
    assert NotifySettings().mail_from == DEFAULT_MAIL_FROM


def test_production_reads_mail_from_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "email-link.key"
    key.write_text(secrets.token_hex(32))
    monkeypatch.setenv("MAIL_FROM", "TaskFlow <no-reply@example.org>")
    assert NotifySettings(**PRODUCTION, email_link_key_file=key).mail_from == "TaskFlow <no-reply@example.org>"
