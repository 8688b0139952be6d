"""Where email goes: an SMTP server named by ``SMTP_URL`` (smtplib), or a Maildir for development.

``SMTP_URL`` schemes (user and password percent-encoded, both or neither):

========================================== ======= ==============================================
URL                                        port    connection
========================================== ======= ==============================================
``smtp://host[:port]``                     25      plain SMTP (a local relay, a mail catcher)
``smtp://user:pass@host[:port]``           25      STARTTLS is *required* before the login, so a
                                                   password never crosses the network in clear
``smtp+starttls://[user:pass@]host[:port]`` 587     STARTTLS required (RFC 3207), then login
``smtps://[user:pass@]host[:port]``         465     TLS from the first byte (RFC 8314), then login
========================================== ======= ==============================================

Certificates are verified against the system's CAs, or ``SMTP_CA_FILE`` for a private CA.
Without ``SMTP_URL`` each message is written to a Maildir (the standard library's ``mailbox``)
under ``$TASKFLOW_VAR/mail``, where a developer reads it with any mail client or ``cat``.

Both transports raise :class:`MailFailed`, telling a transient failure (retry later: the server
is unreachable, busy, or answered 4xx) from a permanent one (the server refused this message
with 5xx; retrying cannot help).
"""

from __future__ import annotations

import mailbox
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

Security = Literal["plain", "starttls", "tls"]
_SCHEMES: dict[str, tuple[Security, int]] = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}


class MailFailed(Exception):
    """The message was not delivered. ``permanent``: the server refused it for good (5xx)."""

    def __init__(self, reason: str, *, permanent: bool = False, server_down: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.server_down = server_down


@dataclass(frozen=True)
class SmtpEndpoint:
    """A parsed ``SMTP_URL`` (see the module docstring)."""

    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpEndpoint:
        """Raises ValueError for an unknown scheme, a missing host or half a credential."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"SMTP_URL scheme must be one of {', '.join(sorted(_SCHEMES))}")
        if not parts.hostname:
            raise ValueError("SMTP_URL needs a host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP_URL has an invalid port") from None
        security, default_port = _SCHEMES[parts.scheme]
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if (username is None) != (password is None):
            raise ValueError("SMTP_URL needs both a user and a password, or neither")
        return cls(parts.hostname, port or default_port, security, username, password)

    @property
    def needs_tls_before_login(self) -> bool:
        return self.security == "starttls" or (self.security == "plain" and self.username is not None)


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` or raise :class:`MailFailed`."""


class SmtpTransport:
    """One SMTP connection per message (mail volume is low; no idle connection to keep alive).

    Args:
        endpoint: the server and how to talk to it.
        timeout_seconds: bound on connecting and on each command.
        ca_file: trust this CA bundle instead of the system's (a private relay).
    """

    def __init__(self, endpoint: SmtpEndpoint, *, timeout_seconds: float = 10.0, ca_file: Path | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout_seconds
        self.ca_file = ca_file

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def send(self, message: EmailMessage) -> None:
        endpoint = self.endpoint
        try:
            if endpoint.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(endpoint.host, endpoint.port, timeout=self.timeout, context=self._context())
            else:
                client = smtplib.SMTP(endpoint.host, endpoint.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as error:
            raise MailFailed(f"cannot connect to {endpoint.host}:{endpoint.port}: {_describe(error)}", server_down=True) from error
        try:
            try:
                client.ehlo()
                if endpoint.needs_tls_before_login:
                    if not client.has_extn("starttls"):
                        raise MailFailed(f"{endpoint.host} does not offer STARTTLS, which this SMTP_URL requires")
                    client.starttls(context=self._context())
                    client.ehlo()
                if endpoint.username is not None:
                    client.login(endpoint.username, endpoint.password or "")
                client.send_message(message)
            finally:
                _close(client)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise MailFailed(f"recipient refused: {codes}", permanent=all(code >= 500 for code in codes)) from error
        except smtplib.SMTPDataError as error:
            raise MailFailed(f"message refused: {_describe(error)}", permanent=error.smtp_code >= 500) from error
        except smtplib.SMTPServerDisconnected as error:
            raise MailFailed(f"connection lost: {_describe(error)}", server_down=True) from error
        except smtplib.SMTPNotSupportedError as error:
            # An address with a non-ASCII local part needs SMTPUTF8 (RFC 6531); no retry adds it.
            raise MailFailed(f"the server cannot take this message: {_describe(error)}", permanent=True) from error
        except smtplib.SMTPException as error:
            # Authentication, sender refused: the configuration or the server's state, not this
            # message. Retried with back-off until someone fixes it.
            raise MailFailed(_describe(error)) from error
        except OSError as error:  # after SMTPException, which is a subclass of OSError
            raise MailFailed(f"connection lost: {_describe(error)}", server_down=True) from error


def _close(client: smtplib.SMTP) -> None:
    """End the session. Once the server answered 250 to DATA it has taken the message (RFC 5321
    §4.1.1.4), so however QUIT goes (421, a dropped connection), the message counts as sent and
    is never sent again."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)
        return f"{error.smtp_code} {text}"[:300]
    return f"{type(error).__name__}: {error}"[:300]


class MaildirTransport:
    """Writes each message into the Maildir at ``path`` (created on first use, parents too)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: EmailMessage) -> None:
        try:
            # mailbox creates only the last directory, and races with another process doing so.
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            mailbox.Maildir(os.fspath(self.path), create=False).add(message)
        except OSError as error:
            raise MailFailed(f"cannot write to the Maildir {self.path}: {error}") from error


def transport(smtp_url: str | None, *, mail_dir: Path, timeout_seconds: float, ca_file: Path | None) -> Transport:
    """The transport the settings ask for: SMTP when ``smtp_url`` is given, else the Maildir."""
    if smtp_url:
        return SmtpTransport(SmtpEndpoint.parse(smtp_url), timeout_seconds=timeout_seconds, ca_file=ca_file)
    return MaildirTransport(mail_dir)
