"""``taskflow-dlq``: list, inspect, requeue and purge parked (dead-lettered) messages.

    taskflow-dlq --queue notify.reminders list
    taskflow-dlq --queue notify.reminders show <event id>
    taskflow-dlq --queue notify.reminders requeue <event id> | --all
    taskflow-dlq --queue notify.reminders purge --yes

``--queue`` is the consumer's queue (``<service>.<purpose>``); its parking queue is
``<queue>.dlq``. The broker is ``--url`` or ``RABBITMQ_URL``. Reading a message to list or show
it returns it to the parking queue unchanged; requeue publishes it (confirmed) to the consumer's
queue with its attempt count reset and the broker's dead-letter history removed, then removes it
from the parking queue.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import pika

from . import broker
from .consumer import ATTEMPT_HEADER, ERROR_HEADER, carried_headers
from .envelope import Event, MalformedEvent
from .topology import queues_exchange


def requeued_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """A parked message's headers as requeue publishes them: its trace context
    (:func:`.consumer.carried_headers`) and a fresh attempt count; no error, no broker history
    (``x-death``, ``x-delivery-count``, …), which would make RabbitMQ take the message's next
    pass through a retry queue for a dead-letter cycle and drop it, and nothing else the publisher set."""
    return {**carried_headers(headers), ATTEMPT_HEADER: 1}


def _parked(channel: Any, queue: str) -> Iterator[tuple[Any, pika.BasicProperties, bytes]]:
    """Every message now in ``queue``, each fetched once (unacked until the channel decides)."""
    remaining = channel.queue_declare(queue, passive=True).method.message_count
    for _ in range(remaining):
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            return
        yield method, properties, body


def _summary(properties: pika.BasicProperties, body: bytes) -> dict[str, Any]:
    headers = properties.headers or {}
    try:
        event = Event.decode(body)
        described = {"id": event.id, "type": event.type, "subject": event.subject, "time": event.time.isoformat()}
    except MalformedEvent:
        described = {"id": _text(properties.message_id), "type": None, "subject": None, "time": None}
    return {**described, "attempts": headers.get(ATTEMPT_HEADER), "error": headers.get(ERROR_HEADER) or _broker_reason(headers)}


def _text(value: Any) -> Any:
    """``value`` as JSON can carry it: bytes (pika's reading of a property or header that is not
    UTF-8, which any publisher may send) as text with escapes, anything else not JSON as its str."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def _readable(body: bytes) -> Any:
    """A parked body as JSON when it is JSON, else as text (a message parked as malformed is the
    one an operator most needs to read)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python's recursion limit
        return body.decode("utf-8", "replace")


def _broker_reason(headers: dict[str, Any]) -> str | None:
    """Why the broker itself parked a message (no consumer recorded an error): its latest
    ``x-death`` entry, e.g. ``delivery_limit`` (RabbitMQ "Dead Letter Exchanges", dead-lettered
    messages)."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
        return None
    latest = deaths[0]
    return f"parked by the broker: {latest.get('reason')} in {latest.get('queue')}"


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Carry out one command; returns the process exit status."""
    dlq = f"{args.queue}.dlq"
    connection = broker.connect(args.url)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        if args.command == "purge":
            if not args.yes:
                print("purge deletes every parked message; repeat with --yes", file=sys.stderr)
                return 2
            purged = channel.queue_purge(dlq).method.message_count
            print(f"purged {purged} message(s) from {dlq}", file=out)
            return 0
        found = 0
        for method, properties, body in _parked(channel, dlq):
            summary = _summary(properties, body)
            selected = args.command == "list" or getattr(args, "all", False) or summary["id"] == args.event_id
            if not selected:
                continue
            found += 1
            if args.command == "list":
                print(json.dumps(summary, default=_text), file=out)
            elif args.command == "show":
                print(json.dumps({**summary, "body": _readable(body)}, indent=2, default=_text), file=out)
            elif args.command == "requeue":
                republished = pika.BasicProperties(
                    content_type=properties.content_type,
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=properties.message_id,
                    type=properties.type,
                    timestamp=properties.timestamp,
                    headers=requeued_headers(properties.headers),
                )
                channel.basic_publish(queues_exchange(args.queue), args.queue, body, republished, mandatory=True)
                channel.basic_ack(method.delivery_tag)
                print(f"requeued {summary['id']} to {args.queue}", file=out)
        if args.command in ("show", "requeue") and not getattr(args, "all", False) and not found:
            print(f"no parked message with id {args.event_id} in {dlq}", file=sys.stderr)
            return 1
        return 0
    finally:
        if connection.is_open:
            connection.close()


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="taskflow-dlq", description=__doc__.splitlines()[0])
    result.add_argument("--url", default=os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    result.add_argument("--queue", required=True, help="the consumer's queue, e.g. notify.reminders")
    commands = result.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="one JSON line per parked message")
    commands.add_parser("show", help="one parked message in full").add_argument("event_id")
    requeue = commands.add_parser("requeue", help="send parked messages back to the consumer")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("event_id", nargs="?")
    which.add_argument("--all", action="store_true")
    commands.add_parser("purge", help="delete every parked message").add_argument("--yes", action="store_true")
    return result


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
