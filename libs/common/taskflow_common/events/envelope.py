"""The CloudEvents 1.0 envelope of every TaskFlow event, structured JSON mode (DESIGN §5).

``{specversion, id, source: "taskflow/<service>", type, subject, time, datacontenttype, data,
traceparent}``; ``traceparent`` (and ``tracestate`` when present) is the CloudEvents distributed
tracing extension, taken from the current OpenTelemetry context when the event is created, so a
consumer continues the trace of the request that caused it. The SDK builds, validates and parses
the envelope; this module only fixes TaskFlow's attribute choices.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import rabbitmq
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from opentelemetry import propagate

EXCHANGE = "taskflow.events"
CONTENT_TYPE = JSONFormat.CONTENT_TYPE
DATA_CONTENT_TYPE = "application/json"
_FORMAT = JSONFormat()


OWNERS = {"user": "taskflow/auth", "task": "taskflow/tasks", "notification": "taskflow/notify"}
"""The one ``source`` each family of the catalog's event types comes from (docs/asyncapi.yaml's
``source`` constants; tests/contract checks they agree)."""


def owner(event_type: str) -> str | None:
    """The one ``source`` events of ``event_type``'s catalog family come from (:data:`OWNERS`),
    e.g. ``taskflow/auth`` for ``user.activated``; None outside the catalog's families."""
    return OWNERS.get(event_type.partition(".")[0])


def forged(event: Event) -> bool:
    """Whether ``event`` is of a catalog family (``user.*``, ``task.*``, ``notification.*``) but
    not from that family's owner: e.g. a ``user.activated`` that does not come from auth."""
    expected = owner(event.type)
    return expected is not None and event.source != expected


class MalformedEvent(ValueError):
    """A message body that is not a CloudEvents 1.0 structured JSON event TaskFlow can read."""


@dataclass(frozen=True, slots=True)
class Event:
    """One domain event. ``type`` is also the AMQP routing key; ``subject`` the entity id."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def trace_headers(self) -> dict[str, str]:
        """The W3C trace context as AMQP headers (``traceparent``, ``tracestate``)."""
        headers = {"traceparent": self.traceparent, "tracestate": self.tracestate}
        return {name: value for name, value in headers.items() if value}

    def encode(self) -> bytes:
        """The structured-mode JSON body (``application/cloudevents+json``)."""
        attributes: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time,
            "datacontenttype": DATA_CONTENT_TYPE,
            **self.trace_headers,
        }
        return rabbitmq.to_structured(CloudEvent(attributes, self.data), _FORMAT).body

    @classmethod
    def decode(cls, body: bytes) -> Event:
        """Parse a structured-mode body.

        Raises:
            MalformedEvent: not JSON, not CloudEvents 1.0, or missing a TaskFlow attribute.
        """
        message = rabbitmq.RabbitMQMessage(headers={}, content_type=CONTENT_TYPE, body=body)
        try:
            parsed = rabbitmq.from_structured(message, _FORMAT, CloudEvent)
        except (BaseCloudEventException, ValueError, TypeError, AttributeError, KeyError, RecursionError) as error:
            # RecursionError: JSON nested deeper than Python's recursion limit, which any publisher may send
            raise MalformedEvent(str(error)[:200]) from error
        data = parsed.get_data()
        time = parsed.get_time()
        if parsed.get_specversion() != "1.0" or not isinstance(data, dict) or time is None or not parsed.get_subject():
            raise MalformedEvent("a TaskFlow event has specversion 1.0, a subject, a time and an object as data")
        return cls(
            id=parsed.get_id(),
            type=parsed.get_type(),
            source=parsed.get_source(),
            subject=parsed.get_subject() or "",
            time=time,
            data=data,
            traceparent=parsed.get_extension("traceparent"),
            tracestate=parsed.get_extension("tracestate"),
        )


def new_event(type: str, *, service: str, subject: str, data: dict[str, Any], actor_id: str | None = None) -> Event:
    """A new event of ``service`` about entity ``subject``, in the current trace.

    Args:
        type: the catalog type, e.g. ``task.created`` (also the routing key).
        service: the emitting service; ``source`` becomes ``taskflow/<service>``.
        subject: the entity's id.
        data: the entity snapshot, JSON-ready (never a password hash or token).
        actor_id: who caused it, added to ``data`` as ``actor_id`` (null when the system did).
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    payload = {**data, "actor_id": actor_id}
    return Event(
        id=str(uuid.uuid4()),
        type=type,
        source=f"taskflow/{service}",
        subject=subject,
        time=datetime.now(UTC),
        data=payload,
        traceparent=carrier.get("traceparent"),
        tracestate=carrier.get("tracestate"),
    )
