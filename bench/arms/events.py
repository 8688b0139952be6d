"""B3, event latency: from ``POST /api/v1/tasks`` being sent to notify's consumer having handled
its ``task.created``, p50 and p99, at a fixed rate far below saturation, ÷ RabbitMQ PerfTest's
consumer latency for persistent, confirmed messages of the same size on the same broker.

Measurement point: the record notify's consumer writes in ``processed_events`` (``_id``
``notify.reminders:<event id>``, ``processed_at``) after the handler's own write and right before
the ack, so the figure covers the whole real path: the request, its write with the outbox, the
in-process dispatcher's confirmed publish, the broker, the consumer, its handler and its record.
A queue of the benchmark's own, bound to ``task.created``, tells which event belongs to which task;
it adds one more copy of each message in the broker, nothing on the path measured. The send
time is taken by locust just before the request; both clocks are this machine's.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pika
from pymongo import MongoClient
from taskflow_common.events.outbox import PENDING_FIELD

from .. import flows, perftest
from ..context import Bench, User
from ..figures import Target, percentile, ratio
from . import entry

CREATORS = 2
CREATOR_RATE = 5  # POST/s per creator: 10/s in all, a fraction of what one POST at a time sustains
QUEUE = "notify.reminders"
SOURCE = "taskflow/tasks"
"""The source of the task.created events measured (record keys name it)."""


class EventObserver:
    """Copies of every ``task.created`` on a queue of its own: task id → (event id, the event's
    ``time``, when the copy arrived), times in epoch seconds. They split the path: the request
    until the event is made, the write and the publish until the copy arrives, the consumer."""

    def __init__(self, amqp_url: str) -> None:
        self.events: dict[str, tuple[str, float, float]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(amqp_url,), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the event observer could not bind its queue")

    def _run(self, amqp_url: str) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue, "taskflow.events", routing_key="task.created")
        self._ready.set()
        while not self._stop.is_set():
            for method, _properties, body in channel.consume(queue, inactivity_timeout=0.2):
                if method is None:
                    break
                event = json.loads(body)
                made = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
                self.events[event["subject"]] = (event["id"], made, time.time())
                channel.basic_ack(method.delivery_tag)
        connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def handled_at(mongodb_uri: str, event_ids: list[str], *, timeout: float = 30) -> dict[str, float]:
    """When notify's consumer recorded each event as handled (epoch seconds), waiting for all."""
    client = MongoClient(mongodb_uri)
    try:
        processed = client["taskflow_notify"]["processed_events"]
        keys = [f"{QUEUE}:{SOURCE}:{event_id}" for event_id in event_ids]  # consumer.record_key
        deadline = time.monotonic() + timeout
        while True:
            found = {record["_id"].rsplit(":", 1)[1]: record["processed_at"].replace(tzinfo=UTC).timestamp()
                     for record in processed.find({"_id": {"$in": keys}})}
            if len(found) == len(keys) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)
    finally:
        client.close()


def drain(bench: Bench, *, timeout: float = 180) -> float:
    """Wait until the earlier arms' events are all out: no task marked as holding unpublished
    events and nothing waiting in notify's queue. B4 writes faster than notify consumes, and
    B3's events would otherwise queue behind hundreds of those. Returns the seconds waited."""
    started = time.monotonic()
    client = MongoClient(bench.infra.mongodb_uri)
    connection = pika.BlockingConnection(pika.URLParameters(bench.infra.rabbitmq_url))
    try:
        channel = connection.channel()
        while True:
            waiting = channel.queue_declare(QUEUE, passive=True).method.message_count
            pending = client["taskflow_tasks"]["tasks"].count_documents({PENDING_FIELD: True})
            if waiting == 0 and pending == 0:
                return round(time.monotonic() - started, 1)
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"after {timeout:g} s, {waiting} events wait in {QUEUE} and {pending} tasks hold unpublished ones")
            time.sleep(0.5)
    finally:
        connection.close()
        client.close()


def run(bench: Bench, user: User) -> dict[str, Any]:
    seconds = bench.seconds * 2
    drained_s = drain(bench)
    observer = EventObserver(bench.infra.rabbitmq_url)
    try:
        plan = {"tasks_url": bench.system.service_url("tasks"), "creator_token": user.token,
                "creators": CREATORS, "creator_rate": CREATOR_RATE}
        created = [entry for entry in flows.run(bench.base / "b3", "events", plan, ["TaskCreator"], seconds=seconds)
                   if entry["name"] == "create" and entry["ok"]]
        deadline = time.monotonic() + 30
        while len(observer.events) < len(created) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        observer.close()
    sent = {entry["task_id"]: entry["sent_at"] for entry in created}
    events = {task_id: observer.events[task_id] for task_id in sent if task_id in observer.events}
    done = handled_at(bench.infra.mongodb_uri, [event_id for event_id, _, _ in events.values()])
    latencies = [(done[event_id] - sent[task_id]) * 1000 for task_id, (event_id, _, _) in events.items() if event_id in done]
    parts = {
        "post_to_event_made_ms": [(made - sent[task_id]) * 1000 for task_id, (_, made, _) in events.items()],
        "event_made_to_copy_ms": [(arrived - made) * 1000 for _, made, arrived in events.values()],
        "event_made_to_handled_ms": [(done[event_id] - made) * 1000 for event_id, made, _ in events.values()
                                     if event_id in done],
    }
    if len(latencies) < len(created) * 0.99:
        raise RuntimeError(f"only {len(latencies)} of {len(created)} events were handled")
    post_ms = [entry["ms"] for entry in created]
    size = 1200
    broker = perftest.run(bench.infra.rabbitmq_url, rate=CREATORS * CREATOR_RATE, seconds=int(seconds), size=size)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    bench.log(f"B3 POST→handled p50 {p50:.1f} ms p99 {p99:.1f} ms; PerfTest p50 {broker['p50']} ms p99 {broker['p99']} ms")
    return entry(
        "B3", "event latency",
        method="locust POSTs tasks at a fixed rate straight to tasks; latency = notify's processed_events record "
               "of the task.created (after its handler's write) − the moment the POST was sent; PerfTest: 1 producer, "
               "1 consumer, persistent, a confirm awaited per message, quorum queue, same rate and broker",
        tool="locust, RabbitMQ PerfTest", concurrency=f"{CREATORS * CREATOR_RATE} POST/s ({CREATORS} users), "
                                                      f"PerfTest {CREATORS * CREATOR_RATE} msg/s",
        duration=f"{seconds:g} s each", data=f"{len(latencies)} events of ~{size} bytes", handler="sqlite",
        measurements={
            "post_to_handled_ms": {"p50": round(p50, 1), "p99": round(p99, 1), "n": len(latencies)},
            **{name: {"p50": round(percentile(values, 0.5), 1), "p99": round(percentile(values, 0.99), 1)}
               for name, values in parts.items()},
            "post_response_ms": {"p50": round(percentile(post_ms, 0.5), 1), "p99": round(percentile(post_ms, 0.99), 1)},
            "perftest_consumer_latency_ms": broker,
            "waited_for_earlier_events_s": drained_s,
        },
        checks=[(Target("p50 ÷ PerfTest p50", 3, at_most=True), ratio(p50, broker["p50"])),
                (Target("p99 ÷ PerfTest p99", 3, at_most=True), ratio(p99, broker["p99"]))],
    )
