"""taskflow-dlq: the operator's view of parked messages."""

from __future__ import annotations

import io
import json
import time

import pika
import pytest
from taskflow_common.events import broker, cli
from taskflow_common.events.consumer import ATTEMPT_HEADER, ERROR_HEADER
from taskflow_common.events.envelope import new_event
from taskflow_common.events.topology import Subscription, declare

from tests.support.infra import Infra

from .helpers import queue_depth


@pytest.fixture
def parked(infra: Infra, subscription) -> tuple[Subscription, list[str]]:
    """A subscription whose parking queue holds two events, as the consumer parks them."""
    chosen: Subscription = subscription("note.created")
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    declare(channel, chosen)
    ids = []
    for subject in ("a", "b"):
        event = new_event("note.created", service="test", subject=subject, data={"n": subject})
        headers = {ATTEMPT_HEADER: 3, ERROR_HEADER: "ValueError: nope"}
        channel.basic_publish(
            "", chosen.dead_letter_queue, event.encode(), pika.BasicProperties(message_id=event.id, headers=headers)
        )
        ids.append(event.id)
    connection.close()
    return chosen, ids


def run(infra: Infra, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = cli.run(cli.parser().parse_args(["--url", infra.rabbitmq_url, *argv]), out)
    return status, out.getvalue()


def depth(infra: Infra, queue: str) -> int:
    return queue_depth(infra.rabbitmq_url, queue)


def test_list_shows_each_parked_message_and_keeps_it(infra: Infra, parked) -> None:
    chosen, ids = parked
    status, out = run(infra, "--queue", chosen.queue, "list")
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 0
    assert [row["id"] for row in rows] == ids
    assert rows[0]["attempts"] == 3 and rows[0]["error"] == "ValueError: nope" and rows[0]["subject"] == "a"
    assert depth(infra, chosen.dead_letter_queue) == 2


def test_show_prints_the_whole_event(infra: Infra, parked) -> None:
    chosen, ids = parked
    status, out = run(infra, "--queue", chosen.queue, "show", ids[1])
    assert status == 0
    assert json.loads(out)["body"]["data"] == {"n": "b", "actor_id": None}
    assert run(infra, "--queue", chosen.queue, "show", "no-such-id")[0] == 1


def test_requeue_all_moves_every_message_back_with_a_fresh_attempt_count(infra: Infra, parked) -> None:
    chosen, _ = parked
    status, _ = run(infra, "--queue", chosen.queue, "requeue", "--all")
    assert status == 0
    assert depth(infra, chosen.dead_letter_queue) == 0
    connection = broker.connect(infra.rabbitmq_url)
    _, properties, _ = connection.channel().basic_get(chosen.queue, auto_ack=True)
    connection.close()
    assert properties.headers[ATTEMPT_HEADER] == 1
    assert ERROR_HEADER not in properties.headers


def test_purge_needs_yes(infra: Infra, parked) -> None:
    chosen, _ = parked
    assert run(infra, "--queue", chosen.queue, "purge")[0] == 2
    assert depth(infra, chosen.dead_letter_queue) == 2
    assert run(infra, "--queue", chosen.queue, "purge", "--yes")[0] == 0
    assert depth(infra, chosen.dead_letter_queue) == 0


def _wait_for_depth(infra: Infra, queue: str, expected: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if depth(infra, queue) == expected:
            return True
        time.sleep(0.1)
    return False


def test_a_message_the_broker_parked_can_fail_again_after_requeue_and_is_not_dropped(infra: Infra, subscription) -> None:
    """The broker's own dead-lettering (a message redelivered past ``x-delivery-limit``) marks it
    with ``x-death``; requeue must not carry that history, or the broker takes the message's next
    pass through a retry queue for a dead-letter cycle and drops it."""
    chosen: Subscription = subscription("note.created", delivery_limit=1)
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    declare(channel, chosen)
    event = new_event("note.created", service="test", subject="cycled", data={})
    channel.basic_publish("", chosen.queue, event.encode(), pika.BasicProperties(message_id=event.id))
    deadline = time.monotonic() + 10
    while depth(infra, chosen.dead_letter_queue) == 0 and time.monotonic() < deadline:
        method, _, _ = channel.basic_get(chosen.queue, auto_ack=False)  # a consumer that keeps crashing:
        if method is not None:  # each return counts against the delivery limit
            channel.basic_nack(method.delivery_tag, requeue=True)
        time.sleep(0.05)
    assert _wait_for_depth(infra, chosen.dead_letter_queue, 1)
    [row] = [json.loads(line) for line in run(infra, "--queue", chosen.queue, "list")[1].splitlines()]
    assert row["id"] == event.id and row["error"] == f"parked by the broker: delivery_limit in {chosen.queue}"
    assert run(infra, "--queue", chosen.queue, "requeue", "--all")[0] == 0
    method, properties, body = channel.basic_get(chosen.queue, auto_ack=False)
    assert method is not None
    history = {name for name in properties.headers or {} if name.startswith(("x-death", "x-first-death", "x-last-death"))}
    assert history == set()
    # it fails once more: the consumer sends it through the first retry queue, headers and all
    channel.basic_publish("", chosen.retry_queue(1), body, properties)
    channel.basic_ack(method.delivery_tag)
    connection.close()
    assert _wait_for_depth(infra, chosen.queue, 1), "the retried message never came back"
