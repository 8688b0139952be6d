"""Issue 18 §5: "published" (confirmed, ``mandatory``) means every subscriber's queue has the
event, even on a fresh broker where some consumer has never run: each worker declares the whole
catalog's topology (taskflow_common.events.subscribers) at start-up, before its relay publishes."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from pymongo import MongoClient
from taskflow_common.events import broker, subscribers
from taskflow_common.events.envelope import new_event
from taskflow_common.events.outbox import Outbox, OutboxStore
from taskflow_common.events.topology import declare

from tests.support.infra import Infra
from tests.support.processes import Child, wait_for


def messages(url: str, queue: str) -> int | None:
    """Messages ready in ``queue``, None when it does not exist."""
    connection = broker.connect(url)
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    except broker.CONNECTION_ERRORS:
        return None
    finally:
        if connection.is_open:
            connection.close()


def test_an_event_published_before_notify_ever_ran_reaches_notify(infra: Infra, vhost: str, tmp_path: Path) -> None:
    # A fresh broker where admin's consumer came first: its queue exists, notify's never did.
    connection = broker.connect(vhost)
    declare(connection.channel(), subscribers.ADMIN_READ_MODELS)
    connection.close()
    prefix = f"topology{uuid.uuid4().hex[:8]}_"
    client = MongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[f"{prefix}tasks"]
    env = {**infra.env, "MONGODB_URI": infra.mongodb_uri, "RABBITMQ_URL": vhost, "MONGODB_DB_PREFIX": prefix,
           "TASKFLOW_ENV": "test"}
    worker = Child([sys.executable, "-m", "taskflow_tasks.worker"], env=env, log_path=tmp_path / "tasks-worker.log")
    try:
        # A task written while the tasks worker starts: its relay publishes task.created.
        event = new_event("task.created", service="tasks", subject="t1", data={"id": "t1", "version": 1})
        with Outbox(OutboxStore(lambda: db, ["tasks"]), handoff_seconds=0).write("tasks", "t1", [event]) as pending:
            db.tasks.insert_one({"_id": "t1", "title": "before notify ran", **pending.insert_fields})
        wait_for(lambda: messages(vhost, subscribers.ADMIN_READ_MODELS.queue) == 1, timeout=60, what="task.created published")
        assert messages(vhost, subscribers.NOTIFY_REMINDERS.queue) == 1, worker.log_tail()
        assert messages(vhost, subscribers.NOTIFY_INBOX.queue) == 0
    finally:
        worker.stop()
        client.drop_database(db.name)
        client.close()
