"""Email delivery (DESIGN §4 notify): SMTP via ``SMTP_URL`` against a real server (aiosmtpd), with
STARTTLS, TLS and login; retries with back-off while the server is down, without holding up the
consumers; permanent refusals recorded; the Maildir without ``SMTP_URL``; ``notification.sent``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import mailbox
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from pymongo.errors import AutoReconnect
from taskflow_common.events import broker
from taskflow_common.events.envelope import EXCHANGE
from taskflow_common.expiry import Sweeper
from taskflow_notify import Notify
from taskflow_notify.mail import SmtpEndpoint
from taskflow_notify.notifications import notification_id
from taskflow_notify.settings import NotifySettings
from taskflow_notify.store import DELIVERIES, DELIVERY_RETENTION, EXPIRIES

from tests.support.catalog import validate_event
from tests.support.faults import failing_first
from tests.support.infra import Infra

from .conftest import Bus, SmtpServer, Workers, eventually, new_id, user_event


def delivery(notify: Notify, user_id: str) -> dict[str, Any] | None:
    return notify.mongo.db["deliveries"].find_one({"_id": notification_id(f"welcome:{user_id}")})


def test_smtp_down_then_up_delivers_the_email_once_without_holding_up_other_events(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    smtp.stop()
    workers.start(notify)
    user_id, other_id = new_id(), new_id()
    bus.publish(user_event("user.registered", user_id))
    # Two attempts counted (at their claims) and the second's failure recorded (its claim released).
    settled = lambda: (found := delivery(notify, user_id) or {}).get("attempts", 0) >= 2 and found["claimed_by"] is None  # noqa: E731
    eventually(settled, what="two failed attempts")
    failed = delivery(notify, user_id)
    assert failed["status"] == "pending" and "connect" in failed["last_error"] and failed["sent_at"] is None
    assert failed["next_attempt_at"] > failed["last_attempt_at"]
    # The consumers carry on meanwhile: another user's event is handled at once.
    bus.publish(user_event("user.registered", other_id))
    eventually(lambda: delivery(notify, other_id) is not None, what="the other user's notification")

    smtp.start()
    eventually(lambda: delivery(notify, user_id)["status"] == "sent", what="delivered after the server is back")
    eventually(lambda: delivery(notify, other_id)["status"] == "sent", what="the other one too")
    eventually(lambda: notify.mongo.db["deliveries"].count_documents({"status": "pending"}) == 0, what="nothing pending")
    assert len(smtp.catcher.to(f"{user_id}@example.com")) == 1
    assert len(smtp.catcher.to(f"{other_id}@example.com")) == 1
    sent = delivery(notify, user_id)
    assert sent["attempts"] >= 3 and sent["sent_at"] is not None and sent["last_error"] is None


def test_without_smtp_url_mail_lands_in_the_maildir(make_notify: Callable[..., Notify], tmp_path: Path) -> None:
    notify = make_notify(mail_dir=tmp_path / "var" / "mail")
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id, email="dev@example.com", name="Dev"))
    assert notify.mailer.send_due() == 1
    [message] = mailbox.Maildir(tmp_path / "var" / "mail", create=False)
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    assert parsed["To"] == "Dev <dev@example.com>" and parsed["Subject"] == "Welcome to TaskFlow"
    assert parsed["Message-ID"] == f"<{notification_id(f'welcome:{user_id}')}@taskflow.localhost>"
    assert parsed.get_body(("plain",)) is not None and parsed.get_body(("html",)) is not None
    assert delivery(notify, user_id)["status"] == "sent"
    assert notify.mailer.send_due() == 0  # sent once
    assert len(mailbox.Maildir(tmp_path / "var" / "mail", create=False)) == 1


def _refuse_recipients(code: str):  # noqa: ANN202 (an aiosmtpd hook)
    async def handle_RCPT(server: Any, session: Any, envelope: Any, address: str, options: list) -> str:  # noqa: N802
        return code

    return handle_RCPT


def test_an_email_the_server_took_is_sent_once_however_its_quit_goes(
    make_notify: Callable[..., Notify], smtp: SmtpServer
) -> None:
    """The server answered 250 to DATA, then 421 to QUIT: the message is delivered, not a failure
    to retry (which sent it again at every attempt)."""

    async def handle_QUIT(server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (an aiosmtpd hook)
        return "421 4.3.2 Shutting down"

    smtp.catcher.handle_QUIT = handle_QUIT
    notify = make_notify(smtp_url=smtp.url)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id, email="quit@example.com"))
    notify.mailer.send_due()

    assert delivery(notify, user_id)["status"] == "sent"
    assert notify.mailer.send_due(datetime.now(UTC) + timedelta(days=1)) == 0
    assert len(smtp.catcher.to("quit@example.com")) == 1


def test_a_permanent_refusal_is_recorded_and_not_retried(make_notify: Callable[..., Notify], smtp: SmtpServer) -> None:
    smtp.catcher.handle_RCPT = _refuse_recipients("550 5.1.1 No such mailbox")
    notify = make_notify(smtp_url=smtp.url)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    notify.mailer.send_due()
    failed = delivery(notify, user_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert "550" in failed["last_error"]
    assert notify.mailer.send_due(datetime.now(UTC) + timedelta(days=1)) == 0


def test_finished_deliveries_expire_after_the_retention_and_pending_ones_never(
    make_notify: Callable[..., Notify], smtp: SmtpServer
) -> None:
    smtp.catcher.handle_RCPT = _refuse_recipients("550 5.1.1 No such mailbox")
    notify = make_notify(smtp_url=smtp.url)
    finished, waiting = new_id(), new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", finished))
    notify.mailer.send_due()
    notify.handlers.handle_user_registered(user_event("user.registered", waiting))
    finished_at = delivery(notify, finished)["finished_at"]
    of_deliveries = [expiry for expiry in EXPIRIES if expiry.collection == DELIVERIES]
    sweep = lambda at: Sweeper(lambda: notify.mongo.db, of_deliveries, clock=lambda: at).sweep()  # noqa: E731
    assert sweep(finished_at + DELIVERY_RETENTION) == 0
    assert sweep(finished_at + DELIVERY_RETENTION + timedelta(milliseconds=1)) == 1
    assert delivery(notify, waiting)["status"] == "pending"  # no finished_at: kept however old
    assert sweep(datetime.now(UTC) + timedelta(days=3650)) == 0


def test_two_mailers_on_a_slow_server_send_each_email_once(make_notify: Callable[..., Notify], smtp: SmtpServer) -> None:
    """Mailer A works a batch on a server taking 0.4 s per message; mailer B polls meanwhile.
    Each claim's lease counts from when that delivery was claimed, not from A's scan, so B never
    takes a delivery A is about to send."""
    accept = smtp.catcher.handle_DATA

    async def slowly(*args: Any) -> str:
        await asyncio.sleep(0.4)
        return await accept(*args)

    smtp.catcher.handle_DATA = slowly
    first, second = make_notify(smtp_url=smtp.url), make_notify(smtp_url=smtp.url)
    for mailer in (first.mailer, second.mailer):
        mailer.deliveries.claim_lease = timedelta(seconds=1.5)
    users = [new_id() for _ in range(6)]
    for user_id in users:
        first.handlers.handle_user_registered(user_event("user.registered", user_id))
    batch = threading.Thread(target=first.mailer.send_due)
    batch.start()
    time.sleep(1.7)  # past the first claims' leases, were they all counted from the scan
    second.mailer.send_due()
    batch.join(30)
    assert sorted(len(smtp.catcher.to(f"{user_id}@example.com")) for user_id in users) == [1] * 6


def test_a_temporary_refusal_is_retried(make_notify: Callable[..., Notify], smtp: SmtpServer) -> None:
    smtp.catcher.handle_RCPT = _refuse_recipients("451 4.3.0 Try again later")
    notify = make_notify(smtp_url=smtp.url, mail_max_attempts=2)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    notify.mailer.send_due()
    assert (delivery(notify, user_id)["status"], delivery(notify, user_id)["attempts"]) == ("pending", 1)
    notify.mailer.send_due(datetime.now(UTC) + timedelta(minutes=1))
    assert (delivery(notify, user_id)["status"], delivery(notify, user_id)["attempts"]) == ("failed", 2)


def test_an_email_that_cannot_be_composed_fails_alone(make_notify: Callable[..., Notify], smtp: SmtpServer) -> None:
    notify = make_notify(smtp_url=smtp.url)
    broken, fine = new_id(), new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", broken))
    notify.mongo.db["recipients"].update_one({"_id": broken}, {"$set": {"email": "x@@y"}})  # not an address
    notify.handlers.handle_user_registered(user_event("user.registered", fine))
    notify.mailer.send_due()
    assert (delivery(notify, broken)["status"], delivery(notify, broken)["attempts"]) == ("failed", 1)
    assert "cannot compose" in delivery(notify, broken)["last_error"]
    assert delivery(notify, fine)["status"] == "sent"


# -- TLS and login ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notify-test-smtp")])
    moment = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(moment - timedelta(minutes=5))
        .not_valid_after(moment + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("smtp-tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"mailer", b"s3cret:/@")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def starttls_smtp(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """A server that takes mail only after STARTTLS and a login (mailer / s3cret:/@)."""
    server = SmtpServer(tls_context=_server_context(certificate), require_starttls=True, auth_required=True,
                        authenticator=_authenticator)
    server.start()
    yield server
    server.stop()


CREDENTIALS = "mailer:s3cret%3A%2F%40"


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtp"])
def test_starttls_and_login_when_the_url_asks(
    make_notify: Callable[..., Notify], starttls_smtp: SmtpServer, certificate: tuple[Path, Path], scheme: str
) -> None:
    """``smtp+starttls://`` always upgrades; ``smtp://`` with credentials too, never logging in in clear."""
    url = f"{scheme}://{CREDENTIALS}@127.0.0.1:{starttls_smtp.port}"
    notify = make_notify(smtp_url=url, smtp_ca_file=certificate[0])
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    notify.mailer.send_due()
    assert delivery(notify, user_id)["status"] == "sent", delivery(notify, user_id)["last_error"]
    assert len(starttls_smtp.catcher.to(f"{user_id}@example.com")) == 1


def test_a_wrong_password_is_a_failure_retried_later(
    make_notify: Callable[..., Notify], starttls_smtp: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    notify = make_notify(smtp_url=f"smtp+starttls://mailer:wrong@127.0.0.1:{starttls_smtp.port}", smtp_ca_file=certificate[0])
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    notify.mailer.send_due()
    recorded = delivery(notify, user_id)
    assert recorded["status"] == "pending" and "535" in recorded["last_error"]
    assert "wrong" not in recorded["last_error"]


def test_an_untrusted_certificate_is_refused(make_notify: Callable[..., Notify], starttls_smtp: SmtpServer) -> None:
    notify = make_notify(smtp_url=f"smtp+starttls://{CREDENTIALS}@127.0.0.1:{starttls_smtp.port}")
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    notify.mailer.send_due()
    assert delivery(notify, user_id)["status"] == "pending"
    assert "CERTIFICATE_VERIFY_FAILED" in delivery(notify, user_id)["last_error"]
    assert starttls_smtp.catcher.messages == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtps_speaks_tls_from_the_first_byte(
    make_notify: Callable[..., Notify], certificate: tuple[Path, Path]
) -> None:
    # aiosmtpd counts only STARTTLS as TLS for AUTH; this whole connection is TLS.
    server = SmtpServer(ssl_context=_server_context(certificate), authenticator=_authenticator, auth_required=True,
                        auth_require_tls=False)
    server.start()
    try:
        notify = make_notify(smtp_url=f"smtps://{CREDENTIALS}@127.0.0.1:{server.port}", smtp_ca_file=certificate[0])
        user_id = new_id()
        notify.handlers.handle_user_registered(user_event("user.registered", user_id))
        notify.mailer.send_due()
        assert delivery(notify, user_id)["status"] == "sent", delivery(notify, user_id)["last_error"]
        assert len(server.catcher.to(f"{user_id}@example.com")) == 1
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpEndpoint("mail.example.com", 25, "plain")),
        ("smtp://localhost:1025", SmtpEndpoint("localhost", 1025, "plain")),
        ("smtp+starttls://u:p%40ss@smtp.example.com", SmtpEndpoint("smtp.example.com", 587, "starttls", "u", "p@ss")),
        ("smtps://u:p@smtp.example.com", SmtpEndpoint("smtp.example.com", 465, "tls", "u", "p")),
    ],
)
def test_smtp_urls(url: str, expected: SmtpEndpoint) -> None:
    assert SmtpEndpoint.parse(url) == expected


@pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "smtp://user@host", "smtp://host:99999", "mail.example.com"])
def test_bad_smtp_urls_fail_at_start_up_without_echoing_them(url: str) -> None:
    with pytest.raises(ValidationError) as raised:
        NotifySettings(smtp_url=url)
    assert url not in str(raised.value)


def test_production_needs_an_smtp_url() -> None:
    with pytest.raises(ValidationError, match="SMTP_URL is required in production"):
        NotifySettings(taskflow_env="production", rabbitmq_url="amqp://taskflow:secret@rabbitmq:5672/%2F")


# -- notification.sent ---------------------------------------------------------------------------


@pytest.fixture
def sent_events(infra: Infra) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """``notification.sent`` events on the real exchange from now on, each checked against the catalog."""
    queue = f"probe.{uuid.uuid4().hex[:8]}"
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(queue, arguments={"x-expires": 600_000})
    channel.queue_bind(queue, EXCHANGE, routing_key="notification.sent")
    seen: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return seen
            seen.append(validate_event(body))

    yield read
    channel.queue_delete(queue)
    connection.close()


def test_each_delivered_notification_is_announced_once(
    make_notify: Callable[..., Notify], bus: Bus, workers: Workers, smtp: SmtpServer,
    sent_events: Callable[[], list[dict[str, Any]]],
) -> None:
    notify = make_notify(smtp_url=smtp.url)
    workers.start(notify)
    user_id, refused_id = new_id(), new_id()
    bus.publish(user_event("user.registered", user_id))
    identifier = notification_id(f"welcome:{user_id}")
    eventually(lambda: [e for e in sent_events() if e["subject"] == identifier], what="notification.sent")
    [event] = [e for e in sent_events() if e["subject"] == identifier]
    data = event["data"]
    assert event["source"] == "taskflow/notify"
    assert data["id"] == identifier and data["user_id"] == user_id and data["kind"] == "welcome"
    assert data["channels"] == ["in_app", "email"] and data["subject_id"] == user_id and data["actor_id"] == user_id
    assert data["created_at"].endswith("Z")
    # Delivered in the inbox only: announced with that channel alone.
    notify.handlers.handle_user_registered(user_event("user.registered", refused_id))
    notify.handlers.handle_user_deactivated(user_event("user.deactivated", refused_id, active=False, version=2))
    refused = notification_id(f"welcome:{refused_id}")
    eventually(lambda: [e for e in sent_events() if e["subject"] == refused], what="the cancelled one announced")
    assert [e["data"]["channels"] for e in sent_events() if e["subject"] == refused] == [["in_app"]]
    assert len([e for e in sent_events() if e["subject"] == identifier]) == 1
    assert json.dumps(data).count("@") == 0  # no email address in the event


def announced(sent_events: Callable[[], list[dict[str, Any]]], identifier: str) -> list[dict[str, Any]]:
    """The ``notification.sent`` events of notification ``identifier``, once the first arrived
    and a second would have had time to follow."""
    eventually(lambda: [e for e in sent_events() if e["subject"] == identifier], what="notification.sent")
    time.sleep(1)
    return [e for e in sent_events() if e["subject"] == identifier]


def test_a_database_error_after_the_server_accepted_is_waited_out_and_the_email_sent_once(
    make_notify: Callable[..., Notify], smtp: SmtpServer, sent_events: Callable[[], list[dict[str, Any]]],
) -> None:
    """Issue 18, finding 3: the outcome of an accepted email is retried while the claim lasts."""
    notify = make_notify(smtp_url=smtp.url)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    deliveries = notify.mailer.deliveries
    deliveries.finish = failing_first(2, AutoReconnect("connection reset after the server accepted"), deliveries.finish)
    assert notify.mailer.send_due() == 1
    assert len(smtp.catcher.to(f"{user_id}@example.com")) == 1
    assert [e["data"]["channels"] for e in announced(sent_events, notification_id(f"welcome:{user_id}"))] == [
        ["in_app", "email"]
    ]
    assert (delivery(notify, user_id)["status"], delivery(notify, user_id)["attempts"]) == ("sent", 1)


def unrecordable(notify: Notify, *, lease_seconds: float) -> Callable[..., Any]:
    """Make every outcome of ``notify``'s mailer fail to be recorded (the database gone, or the
    mailer dead, right after the send), with claims of ``lease_seconds``; returns the real
    ``finish`` to put back."""
    deliveries = notify.mailer.deliveries
    deliveries.claim_lease = timedelta(seconds=lease_seconds)
    real_finish = deliveries.finish
    deliveries.finish = failing_first(float("inf"), AutoReconnect("the outcome cannot be recorded"), real_finish)
    return real_finish


def test_a_database_down_for_the_whole_claim_resends_with_the_same_message_id_and_announces_once(
    make_notify: Callable[..., Notify], smtp: SmtpServer, sent_events: Callable[[], list[dict[str, Any]]],
) -> None:
    """The one window: the outcome could not be recorded before the claim ran out. The claim
    keeps other mailers off until then; after it one retry sends the same message again (a
    mail client folds the two by Message-ID) and the notification is announced once."""
    notify = make_notify(smtp_url=smtp.url)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    deliveries = notify.mailer.deliveries
    real_finish = unrecordable(notify, lease_seconds=3)
    with pytest.raises(AutoReconnect):
        notify.mailer.send_due()
    deliveries.finish = real_finish
    assert notify.mailer.send_due() == 0  # the claim holds: nobody sends it again meanwhile
    after_the_lease = datetime.now(UTC) + deliveries.claim_lease + timedelta(seconds=1)
    assert notify.mailer.send_due(after_the_lease) == 1
    first, second = smtp.catcher.to(f"{user_id}@example.com")
    assert first["Message-ID"] == second["Message-ID"] == delivery(notify, user_id)["message_id"]
    assert len(announced(sent_events, notification_id(f"welcome:{user_id}"))) == 1
    assert (delivery(notify, user_id)["status"], delivery(notify, user_id)["attempts"]) == ("sent", 2)


def test_mailers_dying_after_each_send_use_up_the_attempts_then_give_up(
    make_notify: Callable[..., Notify], smtp: SmtpServer, sent_events: Callable[[], list[dict[str, Any]]],
) -> None:
    """Issue 18, Deliver 3: the attempt is recorded before SMTP, so a mailer that never gets to
    record an outcome still counts: at most ``MAIL_MAX_ATTEMPTS`` sends, then ``failed``."""
    notify = make_notify(smtp_url=smtp.url, mail_max_attempts=2)
    user_id = new_id()
    notify.handlers.handle_user_registered(user_event("user.registered", user_id))
    deliveries = notify.mailer.deliveries
    real_finish = unrecordable(notify, lease_seconds=1)
    moment = datetime.now(UTC)
    for attempt in (1, 2):
        with pytest.raises(AutoReconnect):
            notify.mailer.send_due(moment)
        assert delivery(notify, user_id)["attempts"] == attempt
        moment = delivery(notify, user_id)["claimed_until"]  # as soon as the dead mailer's claim ends
    deliveries.finish = real_finish
    assert notify.mailer.send_due(moment) == 1
    assert len(smtp.catcher.to(f"{user_id}@example.com")) == 2
    given_up = delivery(notify, user_id)
    assert given_up["status"] == "failed" and "no outcome recorded" in given_up["last_error"]
    assert [e["data"]["channels"] for e in announced(sent_events, notification_id(f"welcome:{user_id}"))] == [["in_app"]]
