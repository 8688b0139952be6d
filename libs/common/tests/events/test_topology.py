"""Issue 18 §5: the whole topology of the catalog exists before anything is published. Each worker
declares all of it at start-up; under least privilege (Compose, Kubernetes) a service's user
declares its own queues and finds the others, which the broker's definitions declared at boot."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from taskflow_common.events import broker, subscribers
from taskflow_common.events.envelope import new_event
from taskflow_common.events.publisher import Publisher
from taskflow_common.events.topology import TopologyMissing, declare_all, definitions

from tests.support.infra import Infra
from tests.support.processes import ROOT

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"


def as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()


def messages(url: str, queue: str) -> int:
    connection = broker.connect(url)
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def imported(infra: Infra, vhost_url: str, tmp_path: Path) -> dict[str, str]:
    """deploy/rabbitmq/definitions.json imported into the fresh vhost, its users renamed so the
    session's broker keeps its own; returns each service's renamed user."""
    vhost = unquote(urlsplit(vhost_url).path[1:])
    suffix = uuid.uuid4().hex[:6]
    document = json.loads(DEFINITIONS.read_text())
    names = {user["name"]: f"{user['name']}-{suffix}" for user in document["users"]}
    for user in document["users"]:
        user.update(name=names[user["name"]], password="s3cret")
    for permission in (*document["permissions"], *document["topic_permissions"]):
        permission["user"] = names[permission["user"]]
    for kind in ("permissions", "topic_permissions", "exchanges", "queues", "bindings"):
        for item in document[kind]:
            item["vhost"] = vhost
    document["vhosts"] = [{"name": vhost}]
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(document))
    infra.rabbitmqctl("import_definitions", str(path))
    return names


def test_the_definitions_file_declares_exactly_the_catalog() -> None:
    document = json.loads(DEFINITIONS.read_text())
    kinds = ("exchanges", "queues", "bindings")
    assert {kind: document[kind] for kind in kinds} == definitions(subscribers.CATALOG)


def test_on_a_broker_from_the_definitions_an_event_reaches_every_subscriber_through_a_service_user(
    infra: Infra, vhost: str, tmp_path: Path
) -> None:
    users = imported(infra, vhost, tmp_path)
    try:
        url = as_user(vhost, users["tasks"], "s3cret")
        connection = broker.connect(url)
        declare_all(connection, subscribers.CATALOG)  # none declared (it may not), all found: no 403, no 406
        connection.close()
        publisher = Publisher(url)
        publisher.publish(new_event("task.created", service="tasks", subject="t1", data={"id": "t1"}))
        publisher.close()
        for subscription in (subscribers.ADMIN_READ_MODELS, subscribers.NOTIFY_REMINDERS):
            assert messages(vhost, subscription.queue) == 1, subscription.queue
        assert messages(vhost, subscribers.NOTIFY_INBOX.queue) == 0
    finally:
        for user in users.values():
            infra.rabbitmqctl("delete_user", user)


def test_a_service_user_cannot_complete_a_topology_missing_a_queue_it_may_not_declare(
    infra: Infra, vhost: str, tmp_path: Path
) -> None:
    users = imported(infra, vhost, tmp_path)
    try:
        missing = subscribers.NOTIFY_REMINDERS.retry_queue(2)
        operator = broker.connect(vhost)
        operator.channel().queue_delete(missing)
        operator.close()
        connection = broker.connect(as_user(vhost, users["tasks"], "s3cret"))
        with pytest.raises(TopologyMissing, match=missing.replace(".", r"\.")):
            declare_all(connection, subscribers.CATALOG)
        connection.close()
    finally:
        for user in users.values():
            infra.rabbitmqctl("delete_user", user)
