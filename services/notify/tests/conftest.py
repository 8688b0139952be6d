"""Fixtures for the notify service's tests: its real app and worker on the session's FerretDB and
RabbitMQ (a database, an exchange and queues of each test's own), a real SMTP server (aiosmtpd),
tokens of a test issuer, and catalog-conformant ``user.*`` / ``task.*`` events to publish."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from pymongo import MongoClient
from taskflow_common.events import broker
from taskflow_common.events.envelope import Event, new_event
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.topology import declare, declare_exchange
from taskflow_notify import Notify, assemble, create_app, worker
from taskflow_notify.settings import NotifySettings

from tests.support.catalog import validate_event
from tests.support.infra import Infra
from tests.support.processes import free_port, wait_for
from tests.support.tokens import Issuer

# -- tokens ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer()


# -- the service -------------------------------------------------------------------------------

FAST = {
    "reminder_scan_seconds": 0.2,
    "mail_poll_seconds": 0.1,
    "mail_retry_seconds": 0.2,
    "mail_retry_max_seconds": 1.0,
    "smtp_timeout_seconds": 5.0,
}


@pytest.fixture
def database_prefix(infra: Infra) -> Iterator[str]:
    """This test's database prefix: every notify built in the test shares the database."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield prefix
    client = MongoClient(infra.mongodb_uri)
    client.drop_database(f"{prefix}notify")
    client.close()


@pytest.fixture
def make_settings(infra: Infra, database_prefix: str, tmp_path: Path) -> Callable[..., NotifySettings]:
    def make(**overrides: Any) -> NotifySettings:
        values = {
            "mongodb_uri": infra.mongodb_uri,
            "rabbitmq_url": infra.rabbitmq_url,
            "mongodb_db_prefix": database_prefix,
            "taskflow_env": "test",
            "trusted_proxy_hops": 0,
            "mail_dir": tmp_path / "mail",
            "email_link_key_file": tmp_path / "email-link.key",
            **FAST,
            **overrides,
        }
        return NotifySettings(**values)

    return make


@pytest.fixture
def make_notify(make_settings: Callable[..., NotifySettings]) -> Iterator[Callable[..., Notify]]:
    """Assemble notify (what one process holds); ``**overrides`` change its settings."""
    built: list[Notify] = []

    def make(**overrides: Any) -> Notify:
        notify = assemble(make_settings(**overrides))
        built.append(notify)
        return notify

    yield make
    for notify in built:
        notify.mongo.close()


@pytest.fixture
def notify(make_notify: Callable[..., Notify]) -> Notify:
    return make_notify()


@pytest.fixture
def app(make_settings: Callable[..., NotifySettings], issuer: Issuer) -> Iterator[Flask]:
    application = create_app(make_settings(), verifier=issuer.verifier())
    application.testing = True
    yield application
    application.extensions["taskflow.mongo"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- events ------------------------------------------------------------------------------------


@dataclass
class Bus:
    """An exchange and queue names of this test's own on the session's broker."""

    url: str
    exchange: str
    queue_prefix: str
    queues: set[str] = field(default_factory=set)

    def publish(self, *events: Event) -> None:
        """Publish (confirmed) each event after checking it against the catalog."""
        publisher = Publisher(self.url, exchange=self.exchange)
        try:
            for event in events:
                validate_event(event.encode())
                publisher.publish(event)
        finally:
            publisher.close()


@pytest.fixture
def bus(infra: Infra) -> Iterator[Bus]:
    running = Bus(infra.rabbitmq_url, f"test.events.{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}.notify")
    connection = broker.connect(running.url)
    declare_exchange(connection.channel(), running.exchange)
    connection.close()
    yield running
    connection = broker.connect(running.url)
    channel = connection.channel()
    for queue in running.queues:
        channel.queue_delete(queue)
    channel.exchange_delete(running.exchange)
    connection.close()


@dataclass
class Workers:
    """Worker loops on threads until the test ends."""

    bus: Bus
    stops: list[threading.Event] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, notify: Notify, *, without: tuple[str, ...] = ()) -> Callable[[], None]:
        """Run ``notify``'s worker loops (less those whose name ends with one of ``without``),
        its queues declared before this returns. Returns what stops them (else the test's end)."""
        connection = broker.connect(self.bus.url)
        channel = connection.channel()
        for subscription, _ in worker.subscriptions(notify, exchange=self.bus.exchange, queue_prefix=self.bus.queue_prefix):
            declare(channel, subscription)
            retries = (subscription.retry_queue(attempt) for attempt in range(1, subscription.max_attempts))
            self.bus.queues |= {subscription.queue, subscription.dead_letter_queue, *retries}
        connection.close()
        stop = threading.Event()
        threads = []
        for loop in worker.loops(notify, exchange=self.bus.exchange, queue_prefix=self.bus.queue_prefix):
            if not loop.name.endswith(without):
                threads.append(threading.Thread(target=loop.run, args=(stop,), name=loop.name, daemon=True))
                threads[-1].start()
        self.stops.append(stop)
        self.threads.extend(threads)

        def halt() -> None:
            stop.set()
            for thread in threads:
                thread.join(30)

        return halt

    def stop_all(self) -> None:
        for stop in self.stops:
            stop.set()
        for thread in self.threads:
            thread.join(30)
        self.stops.clear()
        self.threads.clear()


@pytest.fixture
def workers(bus: Bus) -> Iterator[Workers]:
    running = Workers(bus)
    yield running
    running.stop_all()


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, milliseconds, as TaskFlow's events carry timestamps."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_event(type: str, user_id: str, *, email: str | None = None, name: str = "Ada", role: str = "user",
               active: bool = True, email_verified: bool = True, version: int = 1, actor_id: str | None = None,
               **extra: Any) -> Event:
    """A ``user.*`` event as auth publishes it (catalog ``UserData``); verified unless told."""
    moment = iso(datetime.now(UTC))
    snapshot = {
        "id": user_id,
        "email": email or f"{user_id}@example.com",
        "name": name,
        "role": role,
        "active": active,
        "email_verified": email_verified,
        "created_at": moment,
        "updated_at": moment,
        "last_login_at": None,
        "version": version,
        "access_generation": 0,
        **extra,
    }
    return new_event(type, service="auth", subject=user_id, data=snapshot, actor_id=actor_id or user_id)


def task_event(type: str, task_id: str, owner_id: str, *, due: datetime | None, status: str = "todo",
               version: int = 1, title: str = "Write the report", **extra: Any) -> Event:
    """A ``task.*`` event as the tasks service publishes it (catalog ``TaskData``)."""
    moment = iso(datetime.now(UTC))
    snapshot = {
        "id": task_id,
        "title": title,
        "description": "",
        "status": status,
        "priority": "medium",
        "due_date": iso(due) if due is not None else None,
        "tags": [],
        "owner_id": owner_id,
        "created_at": moment,
        "updated_at": moment,
        "completed_at": moment if status == "done" else None,
        "version": version,
        **extra,
    }
    return new_event(type, service="tasks", subject=task_id, data=snapshot, actor_id=owner_id)


def new_id() -> str:
    """An id shaped like a MongoDB ObjectId, as auth and tasks use."""
    return uuid.uuid4().hex[:24]


# -- mail --------------------------------------------------------------------------------------


class MailCatcher:
    """The handler of the test SMTP server: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        message = message_from_bytes(envelope.content, policy=policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [message for message in self.messages if message["X-Envelope-To"] == address]


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a fixed local port that can be stopped and started again."""

    def __init__(self, **options: Any) -> None:
        self.port = free_port()
        self.catcher = MailCatcher()
        self.options = options
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(self.catcher, hostname="127.0.0.1", port=self.port, **self.options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def eventually(condition: Callable[[], Any], *, timeout: float = 30, what: str = "condition") -> None:
    wait_for(lambda: bool(condition()), timeout=timeout, interval=0.05, what=what)
