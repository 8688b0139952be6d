"""The database client gives up on a server that stopped answering (issue 18): a worker's thread
must see an outage (``ConnectionFailure``, which it waits out), never hang for good holding its
messages. The client's socket timeout bounds every operation; its heartbeat also notices a
partition, after about 12 s, but not a server that answers heartbeats and never the query."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from pymongo.errors import ConnectionFailure
from taskflow_common.mongo import Mongo

from tests.support.infra import Infra


class Partition:
    """A TCP relay to ``upstream`` that can stop forwarding (the network partitioned: nothing
    arrives, nothing is refused)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                end.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def partition(infra: Infra) -> Iterator[Partition]:
    address = urlsplit(infra.mongodb_uri)
    relay = Partition((address.hostname or "127.0.0.1", address.port or 27017))
    yield relay
    relay.close()


def test_an_operation_on_a_database_that_stopped_answering_fails_as_an_outage(infra: Infra, partition: Partition) -> None:
    mongo = Mongo(f"mongodb://127.0.0.1:{partition.port}/", "test_partition", app_name="test", socket_timeout_seconds=1)
    try:
        mongo.db.command("ping")
        partition.frozen.set()
        outcome: list[BaseException | None] = []

        def read() -> None:
            try:
                mongo.db["notes"].find_one({})
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 (reported to the test's thread)
                outcome.append(error)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(15)
        assert not reader.is_alive(), "the read still hangs"
        assert isinstance(outcome[0], ConnectionFailure)
    finally:
        partition.frozen.clear()
        mongo.client.close()
