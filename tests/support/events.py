"""Watching the events a running system publishes on ``taskflow.events``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from taskflow_common.events import broker
from taskflow_common.events.envelope import EXCHANGE

from .catalog import validate_event


class EventProbe:
    """A private queue bound to every event type; :meth:`wait_for` reads what arrived.

    Every event read is validated against docs/asyncapi.yaml.
    """

    def __init__(self, rabbitmq_url: str) -> None:
        self.url = rabbitmq_url
        self.queue = f"probe.{uuid.uuid4().hex[:8]}"
        self.seen: list[dict[str, Any]] = []
        self.headers: dict[str, dict[str, Any]] = {}
        connection = broker.connect(rabbitmq_url)
        channel = connection.channel()
        channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        channel.queue_declare(self.queue, auto_delete=False, arguments={"x-expires": 600_000})
        channel.queue_bind(self.queue, EXCHANGE, routing_key="#")
        connection.close()

    def _drain(self) -> None:
        connection = broker.connect(self.url)
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                break
            event = validate_event(body)
            self.headers[event["id"]] = dict(properties.headers or {})
            self.seen.append(event)
        connection.close()

    def wait_for(self, matches: Callable[[dict[str, Any]], bool], *, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """The events matching ``matches`` once at least ``count`` arrived (TimeoutError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            found = [event for event in self.seen if matches(event)]
            if len(found) >= count or time.monotonic() > deadline:
                if len(found) < count:
                    raise TimeoutError(f"{len(found)} of {count} expected events within {timeout}s: {json.dumps(found)[:500]}")
                return found

    def close(self) -> None:
        connection = broker.connect(self.url)
        connection.channel().queue_delete(self.queue)
        connection.close()
