"""Issue 18, attack18: no service's broker account can pass its event off as another service's.

On a vhost imported from deploy/rabbitmq/definitions.json (the accounts of Compose and
Kubernetes), tasks' account tries each way the broker leaves open to a publisher: another family's
routing key, the default exchange or another service's queues exchange straight into a queue, and
its own event wrapped under a routing key it may write. The broker refuses the first three; the
consumer parks the last as forged. So it does what comes through an exchange bound into the events
exchange, or from a queue that dead-letters into it: no service account may declare or bind
either (test_compromised_account), but ``make run``'s one account may, so here the operator's
account sets them up and tasks' publishes. Retries, parking and requeues still work under a
service's own account, which may not write to the default exchange.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker
from pymongo.database import Database
from taskflow_common.events import broker, cli, subscribers
from taskflow_common.events.consumer import PARKED, Consumer, Handler
from taskflow_common.events.envelope import EXCHANGE, Event, new_event
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.topology import Subscription

from tests.support.infra import Infra
from tests.support.processes import wait_for

from .helpers import effects, record_effect
from .test_hostile_messages import RawField, raw_fields  # noqa: F401 (a fixture)
from .test_topology import as_user, imported

FAMILIES = {"auth": "user", "tasks": "task", "notify": "notification"}
TASKS_STATUS = next(s for s in subscribers.CATALOG if s.queue == "tasks.user-status")
ADMIN_STATUS = next(s for s in subscribers.CATALOG if s.queue == "admin.user-status")


@pytest.fixture
def accounts(infra: Infra, vhost: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """The definitions imported into the test's vhost; service name → its account's URL."""
    users = imported(infra, vhost, tmp_path)
    yield lambda service: as_user(vhost, users[service], "s3cret")
    for user in users.values():
        infra.rabbitmqctl("delete_user", user)


def deactivation(user: str = "victim") -> Event:
    """The event that would lock ``user`` out of every service, claiming auth as its source."""
    return new_event("user.deactivated", service="auth", subject=user,
                     data={"id": user, "version": 2**40, "active": False, "access_generation": 2**40})


@contextmanager
def publishing_as(url: str) -> Iterator[BlockingChannel]:
    """A channel with publisher confirms, of the account of ``url``; its connection closed after."""
    connection = broker.connect(url)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def refused(url: str, exchange: str, routing_key: str, body: bytes = b"{}") -> bool:
    """Whether the broker refuses (403) a confirmed publish by the account of ``url``."""
    try:
        with publishing_as(url) as channel:
            channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(delivery_mode=2))
        return False
    except ChannelClosedByBroker as error:
        return error.reply_code == 403


def detour(operator: str) -> str:
    """An exchange named as tasks' own (so tasks may write to it) bound into the events exchange,
    set up by the account of ``operator``; its name."""
    with publishing_as(operator) as channel:
        channel.exchange_declare("tasks.detour", exchange_type="fanout", durable=False)
        channel.exchange_bind(destination=EXCHANGE, source="tasks.detour", routing_key="")
    return "tasks.detour"


def consuming(background, url: str, subscription: Subscription, handlers: dict[str, Handler], db: Database) -> None:
    background.start(Consumer(url, subscription, handlers, lambda: db).run)


def parked_reasons(db: Database) -> list[str]:
    return [record["error"] for record in db[PARKED].find()]


@pytest.mark.parametrize("service", sorted(FAMILIES))
@pytest.mark.parametrize("family", sorted(FAMILIES.values()))
def test_a_service_may_publish_its_own_types_only(accounts, service: str, family: str) -> None:
    own = FAMILIES[service] == family
    assert refused(accounts(service), EXCHANGE, f"{family}.deactivated") is not own


@pytest.mark.parametrize("service", ["auth", "tasks", "admin", "notify"])
def test_no_service_may_delete_or_retype_the_events_exchange(accounts, service: str) -> None:
    """Deleted and declared again as a direct exchange, it would keep its bindings after the
    broker's next boot (the definitions import keeps an existing exchange as it is) while no topic
    permission applied to it any more (attack18, second round)."""
    for attempt in (lambda channel: channel.exchange_delete(EXCHANGE),
                    lambda channel: channel.exchange_declare(EXCHANGE, exchange_type="direct", durable=True)):
        with publishing_as(accounts(service)) as channel, pytest.raises(ChannelClosedByBroker) as refusal:
            attempt(channel)
        assert refusal.value.reply_code == 403


def test_admin_publishes_nothing_to_the_events_exchange(accounts) -> None:
    assert refused(accounts("admin"), EXCHANGE, "task.created")


@pytest.mark.parametrize("exchange", ["", "notify.queues"])
def test_tasks_cannot_put_a_message_straight_into_another_services_queue(accounts, exchange: str) -> None:
    assert refused(accounts("tasks"), exchange, subscribers.NOTIFY_INBOX.queue, deactivation().encode())


def test_an_event_wrapped_under_another_routing_key_is_parked_not_applied(
    accounts, db: Database, background,
) -> None:
    """tasks may write ``task.*``: it sends auth's event under ``task.created``, which reaches
    admin's read models (bound to ``task.*``), where a ``user.deactivated`` has a handler."""
    consuming(background, accounts("admin"), subscribers.ADMIN_READ_MODELS, {"user.deactivated": record_effect(db)}, db)
    wrapped = deactivation()
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish(EXCHANGE, "task.created", wrapped.encode(), pika.BasicProperties(message_id=wrapped.id),
                              mandatory=True)
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the wrapped event parked")
    assert effects(db) == []
    assert parked_reasons(db) == ["forged: user.deactivated from taskflow/auth, routed as task.created"]


def test_an_event_sent_through_an_exchange_bound_into_the_events_exchange_is_parked(
    accounts, db: Database, background,
) -> None:
    """What is published to an exchange bound into the events exchange is not checked against the
    publisher's topic permissions, and arrives routed as ``user.deactivated`` but delivered from
    that exchange."""
    consuming(background, accounts("tasks"), TASKS_STATUS, {"user.deactivated": record_effect(db)}, db)
    forged = deactivation()
    exchange = detour(accounts("operator"))
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish(exchange, "user.deactivated", forged.encode(), pika.BasicProperties(message_id=forged.id))
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the detoured event parked")
    assert effects(db) == []
    assert parked_reasons(db) == ["forged: user.deactivated from taskflow/auth, came through exchange tasks.detour"]


def test_an_event_dead_lettered_into_the_events_exchange_is_parked(
    accounts, db: Database, background,
) -> None:
    """A queue whose dead-letter exchange is the events exchange re-routes what expires in it under
    any routing key it names; the broker marks it with ``x-death``."""
    consuming(background, accounts("tasks"), TASKS_STATUS, {"user.deactivated": record_effect(db)}, db)
    forged = deactivation()
    with publishing_as(accounts("operator")) as channel:
        channel.queue_declare("tasks.trap", arguments={
            "x-message-ttl": 0, "x-dead-letter-exchange": EXCHANGE, "x-dead-letter-routing-key": "user.deactivated",
        })
        channel.queue_bind("tasks.trap", "tasks.queues", routing_key="tasks.trap")
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish("tasks.queues", "tasks.trap", forged.encode(), pika.BasicProperties(message_id=forged.id),
                              mandatory=True)
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the dead-lettered event parked")
    assert effects(db) == []
    assert parked_reasons(db) == ["forged: user.deactivated from taskflow/auth, dead-lettered into the events exchange"]


def test_under_its_own_account_a_consumer_retries_parks_and_the_cli_requeues(
    accounts, db: Database, background,
) -> None:
    """Retries and parking go through ``tasks.queues`` (tasks may not write the default exchange),
    and a requeue by tasks' account brings a parked event back to be applied."""
    failures = {"retried": 1}

    def handler(event: Event) -> None:
        if event.subject == "retried" and failures["retried"]:
            failures["retried"] -= 1
            raise RuntimeError("once")
        if event.subject == "parked" and not db["requeued"].find_one():
            raise RuntimeError("always, until requeued")
        record_effect(db)(event)

    tasks = accounts("tasks")
    consuming(background, tasks, TASKS_STATUS, {"user.activated": handler}, db)
    auth = Publisher(accounts("auth"))
    retried = new_event("user.activated", service="auth", subject="retried", data={"id": "retried"})
    parked = new_event("user.activated", service="auth", subject="parked", data={"id": "parked"})
    auth.publish(retried)
    auth.publish(parked)
    auth.close()
    wait_for(lambda: retried.id in effects(db), timeout=20, what="the event applied on its second attempt")
    # the parked one takes every retry delay of the deployed queues (1 + 5 + 30 s)
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=60, what="the failing event parked")
    db["requeued"].insert_one({})
    out = io.StringIO()
    arguments = cli.parser().parse_args(["--url", tasks, "--queue", TASKS_STATUS.queue, "requeue", parked.id])
    assert cli.run(arguments, out) == 0, out.getvalue()
    wait_for(lambda: parked.id in effects(db), timeout=20, what="the requeued event applied")


@pytest.mark.parametrize("queue", ["tasks.user-status", "tasks.user-status.retry.1"])
def test_an_event_a_service_puts_into_its_own_queue_is_parked(accounts, db: Database, background, queue: str) -> None:
    """A service's own account may write to its own queues exchange (that is how its consumer
    retries and parks), straight into the consumer's queue or into a retry queue that dead-letters
    back through the default exchange: what comes that way must be a message the consumer sent."""
    consuming(background, accounts("tasks"), TASKS_STATUS, {"user.deactivated": record_effect(db)}, db)
    forged = deactivation()
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish("tasks.queues", queue, forged.encode(), pika.BasicProperties(message_id=forged.id), mandatory=True)
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the injected event parked")
    assert effects(db) == []
    (reason,) = parked_reasons(db)
    assert reason.startswith("forged: user.deactivated from taskflow/auth, came back through ")
    assert reason.endswith("but was never sent back by this consumer")


def test_a_requeued_forgery_is_parked_again_and_a_changed_body_under_a_retried_id_is_not_trusted(
    accounts, db: Database, background,
) -> None:
    """The requeue CLI returns a parked message through the consumer's own queues exchange: one
    parked as forged stays untrusted. A retried event's id with another body is not that event."""
    failures = {"left": 1}

    def handler(event: Event) -> None:
        if event.subject == "retried" and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("once")
        record_effect(db)(event)

    tasks = accounts("tasks")
    consuming(background, tasks, TASKS_STATUS, {"user.deactivated": handler}, db)
    wrapped = deactivation("wrapped")
    exchange = detour(accounts("operator"))
    with publishing_as(tasks) as channel:
        channel.basic_publish(exchange, "user.deactivated", wrapped.encode(), pika.BasicProperties(message_id=wrapped.id))
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the detoured event parked")
    out = io.StringIO()
    assert cli.run(cli.parser().parse_args(["--url", tasks, "--queue", TASKS_STATUS.queue, "requeue", "--all"]), out) == 0
    parked_again = {"queue": TASKS_STATUS.queue, "event_id": wrapped.id, "error": {"$regex": "came back through tasks.queues"}}
    wait_for(lambda: db[PARKED].find_one(parked_again) is not None, timeout=20, what="the requeued forgery parked again")

    auth = Publisher(accounts("auth"))
    retried = new_event("user.deactivated", service="auth", subject="retried", data={"id": "retried", "version": 2})
    auth.publish(retried)
    auth.close()
    wait_for(lambda: retried.id in effects(db), timeout=20, what="the genuine event applied on its retry")
    body = retried.encode().replace(b'"subject": "retried"', b'"subject": "changed"')
    assert body != retried.encode()
    with publishing_as(tasks) as channel:
        channel.basic_publish("tasks.queues", TASKS_STATUS.queue, body, pika.BasicProperties(message_id=retried.id),
                              mandatory=True)
    wait_for(lambda: db[PARKED].count_documents({}) == 2, timeout=20, what="the changed body parked")
    assert effects(db) == [retried.id]


def test_an_event_copied_with_a_cc_header_into_another_family_s_queues_is_parked(
    accounts, db: Database, background,
) -> None:
    """RabbitMQ 3.x checks topic permissions against the routing key only, not against the routing
    keys of a ``CC`` header (sender-selected distribution): the copy reaches every queue bound to
    ``user.deactivated``, delivered under the routing key tasks may write."""
    consuming(background, accounts("tasks"), TASKS_STATUS, {"user.deactivated": record_effect(db)}, db)
    forged = deactivation()
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish(EXCHANGE, "task.created", forged.encode(),
                              pika.BasicProperties(message_id=forged.id, headers={"CC": ["user.deactivated"]}))
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the copied event parked")
    assert effects(db) == []
    assert parked_reasons(db) == ["forged: user.deactivated from taskflow/auth, routed as task.created"]


HUGE_DOUBLE = RawField(b"d" + struct.pack(">d", 1e19))
"""A header pika reads (as the int 10**19) but cannot write back: copied into a republish, it
failed every retry, park and requeue of its message."""


@pytest.mark.usefixtures("raw_fields")
def test_a_header_no_republish_can_carry_makes_no_forgery_trusted(accounts, db: Database, background) -> None:
    """attack18, third round: the park of a forgery failed on such a header, the message was then
    parked again as unprocessable under its publisher-chosen message id, which recorded its body
    as parked for a good reason; the same body sent again clean came back trusted. Now the headers
    of a republish are the trace context only, and only a message that passed the checks is ever
    recorded as one to take back."""
    consuming(background, accounts("tasks"), TASKS_STATUS, {"user.deactivated": record_effect(db)}, db)
    forged = deactivation()
    poisoned = pika.BasicProperties(message_id=forged.id, headers={"boom": HUGE_DOUBLE, "x-first-death-boom": HUGE_DOUBLE})
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish("tasks.queues", TASKS_STATUS.queue, forged.encode(), poisoned, mandatory=True)
        wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the poisoned forgery parked")
        channel.basic_publish("tasks.queues", TASKS_STATUS.queue, forged.encode(), pika.BasicProperties(message_id=forged.id),
                              mandatory=True)
        wait_for(lambda: messages_in(channel.connection, TASKS_STATUS.dead_letter_queue) == 2 or effects(db) != [],
                 timeout=90, what="the clean copy parked too")
    assert effects(db) == []
    out = io.StringIO()  # requeue copes with whatever headers a parked message carries
    arguments = cli.parser().parse_args(["--url", accounts("tasks"), "--queue", TASKS_STATUS.queue, "requeue", "--all"])
    assert cli.run(arguments, out) == 0, out.getvalue()
    assert out.getvalue().count("requeued") == 2


def messages_in(connection: pika.BlockingConnection, queue: str) -> int:
    return connection.channel().queue_declare(queue, passive=True).method.message_count
