"""The CloudEvents envelope (DESIGN §5), built and parsed with the SDK."""

from __future__ import annotations

import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from taskflow_common.events.envelope import OWNERS, Event, MalformedEvent, forged, new_event

from tests.support.catalog import catalog


def test_envelope_has_every_attribute_of_the_contract() -> None:
    event = new_event("task.created", service="tasks", subject="t1", data={"title": "x"}, actor_id="u1")
    body = json.loads(event.encode())
    assert body["specversion"] == "1.0"
    assert body["source"] == "taskflow/tasks"
    assert body["type"] == "task.created"
    assert body["subject"] == "t1"
    assert body["datacontenttype"] == "application/json"
    assert body["time"].endswith("Z")
    assert body["data"] == {"title": "x", "actor_id": "u1"}
    assert len(body["id"]) == 36


def test_envelope_round_trips() -> None:
    event = new_event("user.updated", service="auth", subject="u1", data={"name": "Ada"})
    assert Event.decode(event.encode()) == event


def test_trace_context_of_the_current_span_rides_in_the_event() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        event = new_event("task.updated", service="tasks", subject="t1", data={})
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert event.traceparent is not None and trace_id in event.traceparent
    assert json.loads(event.encode())["traceparent"] == event.traceparent
    assert event.trace_headers["traceparent"] == event.traceparent


def test_outside_a_trace_no_traceparent_is_invented() -> None:
    assert trace.get_current_span().get_span_context().is_valid is False
    assert new_event("task.updated", service="tasks", subject="t1", data={}).traceparent is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t"}',
        b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t", "subject": "x", "time": "2026-01-01T00:00:00Z", "data": {}}',
        b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": "x", "time": "2026-01-01T00:00:00Z", "data": "text"}',
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        Event.decode(body)


def test_each_family_has_the_owner_the_catalog_names() -> None:
    sources = {
        name: message["payload"]["allOf"][1]["properties"]["source"]["const"]
        for name, message in catalog()["components"]["messages"].items()
    }
    assert sources and all(OWNERS[name.partition(".")[0]] == source for name, source in sources.items())


@pytest.mark.parametrize(
    ("type", "service", "is_forged"),
    [("user.activated", "auth", False), ("user.activated", "tasks", True), ("task.deleted", "notify", True),
     ("notification.sent", "notify", False), ("note.created", "test", False)],
)
def test_an_event_of_a_catalog_family_is_forged_unless_its_owner_made_it(type: str, service: str, is_forged: bool) -> None:
    assert forged(new_event(type, service=service, subject="s", data={})) is is_forged
