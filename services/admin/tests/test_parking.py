"""``events.dead_lettered`` counts every service's parked events, the broker's own parkings too
(issue 18: it counted only admin's records, and none of what the broker dead-lettered)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pika
from pymongo import MongoClient
from taskflow_admin.parking import ParkingQueues
from taskflow_admin.store import ReadModels
from taskflow_common.events import broker
from taskflow_common.events.topology import Subscription, declare

from tests.support.infra import Infra


def test_dead_lettered_counts_the_messages_in_every_parking_queue(infra: Infra, prefix: str) -> None:
    # Two services' queues: one whose consumer parked two events (with records in its own
    # database, not admin's), one where the broker parked one on its own (no record anywhere).
    queues = [Subscription(f"test-{uuid.uuid4().hex[:8]}.{purpose}", ("note.*",)) for purpose in ("inbox", "audit")]
    connection = broker.connect(infra.rabbitmq_url)
    channel = connection.channel()
    for subscription, parked in zip(queues, (2, 1), strict=True):
        declare(channel, subscription)
        for index in range(parked):
            channel.basic_publish("", subscription.dead_letter_queue, b"{}", pika.BasicProperties(message_id=str(index)))
    client = MongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        db = client[f"{prefix}admin"]
        read_models = ReadModels(lambda: db)
        assert read_models.stats(datetime.now(UTC))["events"]["dead_lettered"] == 0  # not observed yet
        parking = ParkingQueues(lambda: db, infra.rabbitmq_url, queues)
        parking.observe()
        assert read_models.stats(datetime.now(UTC))["events"]["dead_lettered"] == 3
        channel.queue_purge(queues[0].dead_letter_queue)  # requeued or purged by an operator
        parking.observe()
        assert read_models.stats(datetime.now(UTC))["events"]["dead_lettered"] == 1
    finally:
        client.close()
        for subscription in queues:
            for queue in subscription.queue_arguments():
                channel.queue_delete(queue)
        connection.close()
