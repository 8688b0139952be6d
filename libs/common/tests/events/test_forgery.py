"""Issue 18, attack18: no service's broker account can pass its event off as another service's.

On a vhost imported from deploy/rabbitmq/definitions.json (the accounts of Compose and
Kubernetes), tasks' account tries each way the broker leaves open to a publisher: another family's
routing key, the default exchange or another service's queues exchange straight into a queue, its
own event wrapped under a routing key it may write, an exchange of its own bound into the events
exchange, and a queue of its own that dead-letters into the events exchange. The broker refuses
the first three; the consumer parks the others as forged. Retries, parking and requeues still work
under a service's own account, which may no longer write to the default exchange.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
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
from .test_topology import as_user, imported

FAMILIES = {"auth": "user", "tasks": "task", "notify": "notification"}
TASKS_STATUS = next(s for s in subscribers.CATALOG if s.queue == "tasks.user-status")


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


def refused(url: str, exchange: str, routing_key: str, body: bytes = b"{}") -> bool:
    """Whether the broker refuses (403) a confirmed publish by the account of ``url``."""
    connection = broker.connect(url)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(delivery_mode=2))
        return False
    except ChannelClosedByBroker as error:
        return error.reply_code == 403
    finally:
        if connection.is_open:
            connection.close()


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
        connection = broker.connect(accounts(service))
        try:
            with pytest.raises(ChannelClosedByBroker) as refusal:
                attempt(connection.channel())
            assert refusal.value.reply_code == 403
        finally:
            if connection.is_open:
                connection.close()


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
    connection = broker.connect(accounts("tasks"))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(EXCHANGE, "task.created", wrapped.encode(), pika.BasicProperties(message_id=wrapped.id), mandatory=True)
    connection.close()
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the wrapped event parked")
    assert effects(db) == []
    assert parked_reasons(db) == ["forged: user.deactivated from taskflow/auth, routed as task.created"]


def test_an_event_sent_through_an_exchange_bound_into_the_events_exchange_is_parked(
    accounts, db: Database, background,
) -> None:
    """tasks may declare exchanges named ``tasks.*`` and write to the events exchange, so it may
    bind one of its own into it; what it publishes there is not checked against its topic
    permissions, and arrives routed as ``user.deactivated`` but delivered from its exchange."""
    consuming(background, accounts("tasks"), TASKS_STATUS, {"user.deactivated": record_effect(db)}, db)
    tasks = broker.connect(accounts("tasks"))
    channel = tasks.channel()
    channel.confirm_delivery()
    channel.exchange_declare("tasks.detour", exchange_type="fanout", durable=False, auto_delete=True)
    channel.exchange_bind(destination=EXCHANGE, source="tasks.detour", routing_key="")
    forged = deactivation()
    channel.basic_publish("tasks.detour", "user.deactivated", forged.encode(), pika.BasicProperties(message_id=forged.id))
    tasks.close()
    wait_for(lambda: db[PARKED].count_documents({}) == 1, timeout=20, what="the detoured event parked")
    assert effects(db) == []
    assert parked_reasons(db) == ["forged: user.deactivated from taskflow/auth, came through exchange tasks.detour"]


def test_an_event_dead_lettered_into_the_events_exchange_is_parked(
    accounts, db: Database, background,
) -> None:
    """A queue of tasks' own whose dead-letter exchange is the events exchange re-routes what
    expires in it under any routing key it names; the broker marks it with ``x-death``."""
    consuming(background, accounts("tasks"), TASKS_STATUS, {"user.deactivated": record_effect(db)}, db)
    tasks = broker.connect(accounts("tasks"))
    channel = tasks.channel()
    channel.confirm_delivery()
    channel.queue_declare("tasks.trap", arguments={
        "x-message-ttl": 0, "x-dead-letter-exchange": EXCHANGE, "x-dead-letter-routing-key": "user.deactivated",
    })
    channel.queue_bind("tasks.trap", "tasks.queues", routing_key="tasks.trap")
    forged = deactivation()
    channel.basic_publish("tasks.queues", "tasks.trap", forged.encode(), pika.BasicProperties(message_id=forged.id), mandatory=True)
    tasks.close()
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
