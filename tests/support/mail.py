"""The mail a running system wrote to its Maildir (no ``SMTP_URL`` in the test system), and the
verification of an account's email through the link it was sent, as its owner would."""

from __future__ import annotations

import mailbox
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from .accounts import Account
from .processes import wait_for
from .system import Client, System

VERIFY_SUBJECT = "Confirm your email address"


def mails_to(system: System, address: str) -> list[EmailMessage]:
    """Every mail in the system's Maildir addressed to ``address``."""
    directory = Path(system.env["TASKFLOW_VAR"]) / "mail"
    if not (directory / "new").is_dir():
        return []
    parse = BytesParser(policy=policy.default).parsebytes
    messages = [parse(message.as_bytes()) for message in mailbox.Maildir(directory, create=False)]
    return [message for message in messages if address in str(message["To"])]


def verification_token(system: System, address: str) -> str:
    """The token of the newest verification link mailed to ``address`` (waits up to 30 s)."""
    wait_for(lambda: any(mail["Subject"] == VERIFY_SUBJECT for mail in mails_to(system, address)), timeout=30,
             interval=0.25, what=f"the verification mail to {address}")
    newest = max((mail for mail in mails_to(system, address) if mail["Subject"] == VERIFY_SUBJECT), key=lambda mail: mail["Date"].datetime)
    text = newest.get_body(("plain",)).get_content()
    return text.split("#token=", 1)[1].split()[0]


def verify_email(gateway: Client, system: System, account: Account) -> None:
    """Open the verification link mailed to the account, as the web page does."""
    response = gateway.post("/api/v1/auth/verify-email", json={"token": verification_token(system, account.email)})
    assert response.status_code == 204, response.text
