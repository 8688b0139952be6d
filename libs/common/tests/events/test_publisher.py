"""Publishing: confirmed, persistent, mandatory; reconnecting (DESIGN §5, issue 3)."""

from __future__ import annotations

import time
from dataclasses import replace

import pika
import pytest
from taskflow_common.events.envelope import Event, new_event
from taskflow_common.events.publisher import FIRST_PUBLICATION_HEADER, PUBLISH_FAILURES, Publisher, Unroutable

from tests.support.infra import Infra

from .conftest import Probe


def test_a_confirmed_event_is_in_the_bound_queue_persistent_with_trace_headers(
    infra: Infra, exchange: str, probe: Probe
) -> None:
    publisher = Publisher(infra.rabbitmq_url, exchange=exchange)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = replace(new_event("note.created", service="test", subject="n1", data={"text": "x"}), traceparent=traceparent)
    publisher.publish(event)
    publisher.close()
    [(properties, body)] = probe.messages()
    assert Event.decode(body) == event
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    assert properties.content_type == "application/cloudevents+json"
    assert properties.message_id == event.id
    assert properties.type == "note.created"
    assert properties.headers["traceparent"].split("-")[1] == traceparent.split("-")[1]  # the same trace


def test_an_unroutable_event_is_detected_not_dropped(infra: Infra, exchange: str) -> None:
    publisher = Publisher(infra.rabbitmq_url, exchange=exchange)
    before = PUBLISH_FAILURES.labels("nobody.listens", "unroutable")._value.get()
    with pytest.raises(Unroutable):
        publisher.publish(new_event("nobody.listens", service="test", subject="x", data={}))
    assert PUBLISH_FAILURES.labels("nobody.listens", "unroutable")._value.get() == before + 1
    publisher.close()


def test_a_connection_idle_past_the_heartbeat_still_publishes(infra: Infra, exchange: str, probe: Probe) -> None:
    publisher = Publisher(infra.rabbitmq_url, exchange=exchange, heartbeat_seconds=1)
    publisher.publish(new_event("note.created", service="test", subject="first", data={}))
    time.sleep(4)  # no heartbeats answered for > 2 intervals: the broker drops the connection
    publisher.publish(new_event("note.created", service="test", subject="second", data={}))
    publisher.close()
    assert [Event.decode(body).subject for _, body in probe.messages()] == ["first", "second"]


def test_a_hand_off_is_marked_first_unless_it_took_a_second_try(infra: Infra, exchange: str, probe: Probe) -> None:
    """The mark lets consumers skip the de-duplication look-up, so it goes only where nothing can
    have published the event before: a hand-off's first try. After a dead connection, the first
    try may have reached the broker: the second is a possible repeat, and unmarked."""
    publisher = Publisher(infra.rabbitmq_url, exchange=exchange, heartbeat_seconds=1)
    publisher.publish(new_event("note.created", service="test", subject="handed off", data={}), first=True)
    publisher.publish(new_event("note.created", service="test", subject="relayed", data={}))
    time.sleep(4)  # no heartbeats answered for > 2 intervals: the broker drops the connection
    publisher.publish(new_event("note.created", service="test", subject="second try", data={}), first=True)
    publisher.close()
    marks = {Event.decode(body).subject: (properties.headers or {}).get(FIRST_PUBLICATION_HEADER)
             for properties, body in probe.messages()}
    assert marks == {"handed off": "1", "relayed": None, "second try": None}


def test_keepalive_keeps_an_idle_connection_open(infra: Infra, exchange: str, probe: Probe) -> None:
    publisher = Publisher(infra.rabbitmq_url, exchange=exchange, heartbeat_seconds=1)
    publisher.publish(new_event("note.created", service="test", subject="first", data={}))
    connection = publisher._connection
    for _ in range(16):
        time.sleep(0.25)
        publisher.keepalive()
    assert publisher._connection is connection and connection.is_open
    publisher.close()
