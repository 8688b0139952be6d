"""FerretDB and RabbitMQ for the test session, started by the same scripts `make run` uses,
on free ports with state in a temporary directory (never ``var/``)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pika
from pymongo import MongoClient

from .processes import ROOT, Child, free_port, wait_for


def own_environment() -> dict[str, str]:
    """This process's environment without what would point the scripts at another copy's database,
    broker or services, or tell them whether to start their own (scripts/env.sh decides that)."""
    inherited = ("MONGODB_URI", "RABBITMQ_URL", "JWKS_URL", "AUTH_URL", "TASKS_URL",
                 "TASKFLOW_OWN_MONGODB", "TASKFLOW_OWN_RABBITMQ")
    return {name: value for name, value in os.environ.items() if name not in inherited}


class Infra:
    """A private FerretDB and RabbitMQ node; ``mongodb_uri`` and ``rabbitmq_url`` reach them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.mongodb_port = free_port()
        self.rabbitmq_port = free_port()
        self.node = f"taskflow-test-{uuid.uuid4().hex[:8]}@localhost"
        self.env = {
            **own_environment(),
            "TASKFLOW_VAR": str(base / "var"),
            "MONGODB_PORT": str(self.mongodb_port),
            "RABBITMQ_PORT": str(self.rabbitmq_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "TASKFLOW_RABBITMQ_NODE": self.node,
        }
        self.mongodb_uri = f"mongodb://127.0.0.1:{self.mongodb_port}/"
        self.rabbitmq_url = f"amqp://guest:guest@127.0.0.1:{self.rabbitmq_port}/%2F"
        self.children: list[Child] = []

    def start(self) -> Infra:
        """Start both and wait until they answer; on failure stop what started and raise."""
        self.children.append(Child(["scripts/ferretdb"], env=self.env, log_path=self.base / "ferretdb.log"))
        self.children.append(Child(["scripts/rabbitmq"], env=self.env, log_path=self.base / "rabbitmq.log"))
        try:
            wait_for(self._mongodb_answers, timeout=60, what="FerretDB answering")
            wait_for(self.broker_answers, timeout=120, interval=0.25, what="RabbitMQ accepting AMQP")
        except TimeoutError as error:
            logs = "\n".join(f"--- {child.log_path.name} ---\n{child.log_tail()}" for child in self.children)
            self.stop()
            raise TimeoutError(f"{error}\n{logs}") from None
        return self

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()

    def _mongodb_answers(self) -> bool:
        return mongodb_answers(self.mongodb_uri)

    def broker_answers(self) -> bool:
        """True when an AMQP handshake with the test broker succeeds."""
        parameters = pika.URLParameters(self.rabbitmq_url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = 1
        try:
            pika.BlockingConnection(parameters).close()
            return True
        except Exception:  # noqa: BLE001 (not up)
            return False

    def rabbitmqctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against the test node; returns its output, raises on failure."""
        result = subprocess.run(
            [str(ROOT / "scripts/rabbitmqctl"), *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")
        return result.stdout

    def fresh_vhost(self) -> str:
        """A new, empty vhost on the test broker, where guest may do everything; its AMQP URL."""
        name = f"fresh-{uuid.uuid4().hex[:8]}"
        self.rabbitmqctl("add_vhost", name)
        self.rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return f"{self.rabbitmq_url.rsplit('/', 1)[0]}/{name}"

    def stop_broker(self) -> None:
        """Stop the RabbitMQ application (the AMQP port closes; the Erlang node stays up)."""
        self.rabbitmqctl("stop_app")
        wait_for(lambda: not self.broker_answers(), timeout=30, what="broker refusing AMQP")

    def start_broker(self) -> None:
        """Start the RabbitMQ application again after :meth:`stop_broker`."""
        self.rabbitmqctl("start_app")
        wait_for(self.broker_answers, timeout=60, what="broker accepting AMQP")


def mongodb_answers(uri: str) -> bool:
    """True when the MongoDB-compatible server at ``uri`` answers a ping within half a second."""
    client = MongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        client.admin.command("ping")
        return True
    except Exception:  # noqa: BLE001 (not up yet)
        return False
    finally:
        client.close()
