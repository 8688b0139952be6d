"""attack18, fourth round: what a compromised service's broker account (tasks') could still do to
the other services without getting an event applied: stop their workers at start-up, make every
publish of another family fail, have an honest event skipped or its requeue refused, stall a
consumer (with a forgery too big to park, or a body too deep to parse), break the parking CLI.
Each test failed before its fix.

Every test imports deploy/rabbitmq/definitions.json into a vhost of its own (the ``accounts``
fixture of test_forgery) and uses that vhost's queues only.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker
from pymongo.database import Database
from taskflow_common.events import broker, cli, subscribers
from taskflow_common.events.consumer import PARKED, PROCESSED, RETRIED, record_key
from taskflow_common.events.envelope import EXCHANGE, Event, new_event
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.topology import declare_all

from tests.support.processes import wait_for

from .helpers import effects, record_effect
from .test_forgery import ADMIN_STATUS, accounts, consuming, deactivation, publishing_as  # noqa: F401 (a fixture)
from .test_topology import messages

ACCESS_REFUSED = 403
FRAME_MAX = 131072
"""RabbitMQ's and pika's default ``frame_max``: a message's properties (its headers) travel in one frame."""

CHANGES: dict[str, Callable[[BlockingChannel, str], object]] = {
    # what would keep every other worker waiting at start-up for a queue the definitions declare
    "delete its own parking queue": lambda channel, service: channel.queue_delete(f"{service}.user-status.dlq"),
    "delete its own queues exchange": lambda channel, service: channel.exchange_delete(f"{service}.queues"),
    # what made every publish of a family fail (a full queue that rejects) or read all its events
    "declare a queue": lambda channel, service: channel.queue_declare(
        f"{service}.jam", durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}),
    "bind its own queue to another family": lambda channel, service: channel.queue_bind(
        f"{service}.user-status.dlq", EXCHANGE, routing_key="user.#"),
    "declare an exchange": lambda channel, service: channel.exchange_declare(f"{service}.detour", exchange_type="fanout"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("service", ["tasks", "admin", "notify"])
def test_no_service_may_change_the_topology(accounts, service: str, change: str) -> None:
    with publishing_as(accounts(service)) as channel, pytest.raises(ChannelClosedByBroker) as refusal:
        CHANGES[change](channel, service)
    assert refusal.value.reply_code == ACCESS_REFUSED
    for other in ("auth", "tasks", "admin", "notify"):  # what every worker does first still works
        connection = broker.connect(accounts(other))
        try:
            declare_all(connection, subscribers.CATALOG)
        finally:
            connection.close()


def test_a_task_event_reusing_the_id_of_a_retried_user_event_does_not_make_admin_skip_it(
    accounts, db: Database, background,
) -> None:
    """Admin's read-models queue takes ``user.*`` and ``task.*``. tasks, knowing the id of auth's
    ``user.deactivated`` (``make run``'s one account reads every event), publishes a genuine
    ``task.created`` under that id while auth's event waits in a retry queue: applied first, it
    must not make auth's event look applied already (CloudEvents: source + id is unique)."""
    failed = {"left": 1}

    def deactivate(event: Event) -> None:
        if failed["left"]:
            failed["left"] -= 1
            raise RuntimeError("a transient failure")
        record_effect(db)(event)

    consuming(background, accounts("admin"), subscribers.ADMIN_READ_MODELS,
              {"user.deactivated": deactivate, "task.created": record_effect(db)}, db)
    honest = deactivation("victim")
    auth = Publisher(accounts("auth"))
    auth.publish(honest)
    auth.close()
    wait_for(lambda: db[RETRIED].count_documents({}) == 1, timeout=20, what="auth's event sent to a retry queue")
    shadow = new_event("task.created", service="tasks", subject="t-1", data={"id": "t-1", "title": "x"})
    shadow = Event(honest.id, shadow.type, shadow.source, shadow.subject, shadow.time, shadow.data)
    tasks = Publisher(accounts("tasks"))
    tasks.publish(shadow)
    tasks.close()
    wait_for(lambda: effects(db).count(honest.id) == 2, timeout=20, what="both events applied, each once")
    # Each record is written after its handler's effect: wait for both before comparing them.
    wait_for(lambda: db[PROCESSED].count_documents({}) >= 2, timeout=20, what="both events recorded")
    keys = {record["_id"] for record in db[PROCESSED].find()}
    assert keys == {record_key(subscribers.ADMIN_READ_MODELS.queue, honest), record_key(subscribers.ADMIN_READ_MODELS.queue, shadow)}
    assert effects(db).count(honest.id) == 2


@pytest.mark.parametrize("copy", ["another body", "the same body"])
def test_a_copy_parked_as_forged_under_a_parked_event_s_id_leaves_its_requeue_trusted(
    accounts, db: Database, background, copy: str,
) -> None:
    """A genuine ``user.deactivated`` that admin's consumer crashed on ten times is parked, trusted,
    on its last delivery. tasks then sends a message with its id (another body, or the very same
    bytes) as a ``CC`` copy of a ``task.created``, which is parked as forged. The operator's
    requeue of the genuine event must still apply it: the forged copy's parking must not have
    made the genuine one's record untrusted."""
    honest = deactivation("victim")
    auth = Publisher(accounts("auth"))
    auth.publish(honest)
    auth.close()
    with publishing_as(accounts("admin")) as channel:  # admin's consumer crashing on it, ten times
        for _ in range(ADMIN_STATUS.delivery_limit):
            method, _properties, _body = channel.basic_get(ADMIN_STATUS.queue, auto_ack=False)
            channel.basic_nack(method.delivery_tag, requeue=True)
    consuming(background, accounts("admin"), ADMIN_STATUS, {"user.deactivated": record_effect(db)}, db)
    wait_for(lambda: db[PARKED].find_one({"event_id": honest.id, "trusted": True}) is not None, timeout=20,
             what="the genuine event parked, trusted, on its last delivery")

    body = honest.encode() if copy == "the same body" else Event(
        honest.id, honest.type, honest.source, honest.subject, honest.time, {**honest.data, "version": 1}).encode()
    with publishing_as(accounts("tasks")) as channel:  # RabbitMQ 3.x checks no topic permission for CC
        channel.basic_publish(EXCHANGE, "task.created", body,
                              pika.BasicProperties(message_id=honest.id, headers={"CC": ["user.deactivated"]}))
    wait_for(lambda: db[PARKED].count_documents({"error": {"$regex": "^forged"}}) == 1, timeout=20,
             what="the copy parked as forged")

    out = io.StringIO()  # the operator requeues the genuine event (and the copy with it: same id)
    arguments = cli.parser().parse_args(["--url", accounts("operator"), "--queue", ADMIN_STATUS.queue, "requeue", honest.id])
    assert cli.run(arguments, out) == 0, out.getvalue()
    wait_for(lambda: honest.id in effects(db), timeout=20, what="the requeued genuine deactivation applied")
    assert effects(db) == [honest.id]
    forged_copies = 1 if copy == "another body" else 0  # the same bytes are the genuine event: skipped as applied
    wait_for(lambda: db[PARKED].count_documents({"trusted": False}) == forged_copies, timeout=20,
             what="the other body parked again, untrusted")


def publish_malformed_with_a_binary_message_id(tasks: str) -> None:
    """pika reads a ``message_id`` that is not UTF-8 as ``bytes``; any publisher may send one."""
    with publishing_as(tasks) as channel:
        channel.basic_publish(EXCHANGE, "task.created", b"not a cloudevent",
                              pika.BasicProperties(message_id=b"\xff\xfe", delivery_mode=2), mandatory=True)


def test_a_malformed_message_with_a_binary_message_id_is_parked_alone_without_a_reconnect(
    accounts, db: Database, background,
) -> None:
    """Parking it used to raise, so the consumer reconnected on each redelivery, with back-off,
    until the broker parked it: ~110 s of stall per such message for the good events behind it."""
    publish_malformed_with_a_binary_message_id(accounts("tasks"))
    good = new_event("task.created", service="tasks", subject="t-1", data={"id": "t-1"})
    tasks = Publisher(accounts("tasks"))
    tasks.publish(good)
    tasks.close()
    consuming(background, accounts("admin"), subscribers.ADMIN_READ_MODELS, {"task.created": record_effect(db)}, db)
    wait_for(lambda: good.id in effects(db), timeout=10, what="the good event behind it applied")
    assert [record["error"][:10] for record in db[PARKED].find()] == ["malformed:"]


def test_the_dlq_cli_lists_and_shows_a_parked_message_whose_message_id_is_not_utf8(accounts) -> None:
    publish_malformed_with_a_binary_message_id(accounts("tasks"))
    queue = subscribers.ADMIN_READ_MODELS.queue
    with publishing_as(accounts("admin")) as channel:  # a consumer failing on it until the broker parks it
        while (method := channel.basic_get(queue, auto_ack=False)[0]) is not None:
            channel.basic_nack(method.delivery_tag, requeue=True)
    out = io.StringIO()
    assert cli.run(cli.parser().parse_args(["--url", accounts("operator"), "--queue", queue, "list"]), out) == 0
    (line,) = out.getvalue().splitlines()
    assert '"id": "\\\\xff\\\\xfe"' in line
    out = io.StringIO()
    assert cli.run(cli.parser().parse_args(["--url", accounts("operator"), "--queue", queue, "show", "\\xff\\xfe"]), out) == 0
    assert "not a cloudevent" in out.getvalue()


def with_source(event: Event, source: str) -> bytes:
    return Event(event.id, event.type, source, event.subject, event.time, event.data).encode()


def test_a_forgery_whose_parking_reason_overflows_a_frame_stalls_no_honest_event(
    accounts, db: Database, background,
) -> None:
    """A forgery is parked with its reason in the ``x-taskflow-error`` header, and that reason
    quotes the forgery's ``source`` whole. tasks sends, as a ``CC`` copy into ``user.deactivated``'s
    queues, a ``user.deactivated`` whose source is 140 kB: the header frame of the park's republish
    exceeds ``frame_max``, the broker closes the consumer's connection, the message comes back,
    ten times with back-off, until the broker parks it itself. Meanwhile auth's honest events to
    the same queue wait (about 80 s per such message, any number of them)."""
    consuming(background, accounts("admin"), ADMIN_STATUS, {"user.deactivated": record_effect(db)}, db)
    poison = deactivation("poison")
    body = with_source(poison, "taskflow/auth/" + "x" * (FRAME_MAX + 10_000))
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish(EXCHANGE, "task.created", body,
                              pika.BasicProperties(message_id=poison.id, headers={"CC": ["user.deactivated"]}))
    wait_for(lambda: db[PARKED].find_one({"event_id": poison.id}, {"_id": 1}) is not None, timeout=20,
             what="the forgery's parking started (its record written, its republish next)")
    honest = deactivation("victim")
    auth = Publisher(accounts("auth"))
    auth.publish(honest)
    auth.close()
    wait_for(lambda: honest.id in effects(db), timeout=20, what="auth's honest event applied behind the forgery")
    assert effects(db) == [honest.id]
    assert db[PARKED].count_documents({"event_id": poison.id, "trusted": False}) == 1


DEEP = b"[" * 100_000 + b"]" * 100_000
"""JSON nested deeper than Python's recursion limit: ``json.loads`` raises ``RecursionError``, a
``RuntimeError`` rather than the ``ValueError`` a malformed body raises."""


def test_a_body_nested_too_deep_for_json_leaves_the_dlq_cli_working(accounts, db: Database, background) -> None:
    """tasks sends a body nested 100 000 deep as a ``CC`` copy into every ``user.deactivated``
    queue. The consumer parked it as unprocessable (its own catch-all), and the parking CLI, reading
    every message with ``Event.decode`` and ``json.loads`` and catching only ``MalformedEvent`` and
    ``ValueError``, crashed on ``list`` and ``show``, and a ``requeue`` of a genuine event parked
    behind it never reached it. Both now take it for malformed. (Every parking queue of the system
    is reachable this way.)"""
    consuming(background, accounts("admin"), ADMIN_STATUS, {"user.deactivated": record_effect(db)}, db)
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish(EXCHANGE, "task.created", DEEP,
                              pika.BasicProperties(message_id="deep", headers={"CC": ["user.deactivated"]}))
    wait_for(lambda: db[PARKED].count_documents({"error": {"$regex": "^malformed: "}}) == 1,
             timeout=20, what="the deep body parked as malformed")

    honest = deactivation("victim")  # then a genuine event the consumer crashed on, parked trusted
    with publishing_as(accounts("operator")) as channel:
        channel.queue_purge(ADMIN_STATUS.queue)
    background.stop_all()
    auth = Publisher(accounts("auth"))
    auth.publish(honest)
    auth.close()
    with publishing_as(accounts("admin")) as channel:
        for _ in range(ADMIN_STATUS.delivery_limit + 1):  # the broker parks it on its 11th return
            method, _properties, _body = channel.basic_get(ADMIN_STATUS.queue, auto_ack=False)
            channel.basic_nack(method.delivery_tag, requeue=True)
    wait_for(lambda: messages(accounts("operator"), ADMIN_STATUS.dead_letter_queue) == 2, timeout=20,
             what="the genuine event parked behind the deep body")

    def dlq(*command: str) -> tuple[int | str, str]:
        out = io.StringIO()
        arguments = cli.parser().parse_args(["--url", accounts("operator"), "--queue", ADMIN_STATUS.queue, *command])
        try:
            return cli.run(arguments, out), out.getvalue()
        except RecursionError as error:
            return f"crashed: {type(error).__name__}", out.getvalue()

    assert dlq("list")[0] == 0
    status, out = dlq("requeue", honest.id)
    assert status == 0 and f"requeued {honest.id}" in out


def test_an_event_with_trace_headers_too_big_to_republish_holds_back_no_other(accounts, db: Database, background) -> None:
    """tasks' own ``task.created`` with a ``baggage`` header near the frame's size, which its handler
    fails on: published, it fits; republished to a retry queue with its attempt and error added, it
    would not, and the broker would close the consumer's connection at every redelivery, holding
    back the events behind it (about 80 s for each such message). An over-long trace header is
    dropped instead (W3C Baggage allows 8,192 bytes), and the message goes on to its retries."""

    def create(event: Event) -> None:
        if event.subject == "heavy":
            raise RuntimeError("this one always fails, " + "described at length " * 40)
        record_effect(db)(event)

    consuming(background, accounts("admin"), subscribers.ADMIN_READ_MODELS, {"task.created": create}, db)
    heavy = new_event("task.created", service="tasks", subject="heavy", data={"id": "heavy"})
    with publishing_as(accounts("tasks")) as channel:
        channel.basic_publish(EXCHANGE, "task.created", heavy.encode(), pika.BasicProperties(
            message_id=heavy.id, delivery_mode=2, headers={"baggage": "k=" + "v" * (FRAME_MAX - 300)}), mandatory=True)
    wait_for(lambda: db[RETRIED].count_documents({}) == 1, timeout=20, what="the heavy event failed once")
    behind = new_event("task.created", service="tasks", subject="behind", data={"id": "behind"})
    tasks = Publisher(accounts("tasks"))
    tasks.publish(behind)
    tasks.close()
    wait_for(lambda: behind.id in effects(db), timeout=10, what="the event behind it applied")
