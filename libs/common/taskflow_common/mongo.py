"""The MongoDB client of a service: one pool per process, created on first use.

pymongo's ``MongoClient`` must not cross a ``fork()`` (gunicorn forks workers, also with
``--preload``), so :class:`Mongo` creates its client lazily and forgets it in a forked child.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

from pymongo import IndexModel, MongoClient
from pymongo.database import Database
from pymongo.errors import AutoReconnect, OperationFailure


@dataclass(frozen=True)
class Indexes:
    """The indexes of one collection, declared next to the queries that need them."""

    collection: str
    models: tuple[IndexModel, ...] = field(default_factory=tuple)


class Mongo:
    """Lazily connected handle on one service's database.

    Args:
        uri: a MongoDB connection string (``MONGODB_URI``).
        database: the service's database name.
        app_name: reported to the server in the handshake, shown in its logs.
        timeout_seconds: server selection and connect timeout; a request waits at most this
            long for an unavailable database before failing with 503.
        socket_timeout_seconds: how long one operation may wait for the server's answer before
            it fails with ``NetworkTimeout`` (a ``ConnectionFailure``): a database that stopped
            answering (a network partition, a frozen process) is then an outage that workers
            wait out, not a thread hung for good. Above the slowest legitimate operation.
    """

    def __init__(
        self, uri: str, database: str, *, app_name: str, timeout_seconds: float = 2.0, socket_timeout_seconds: float = 60.0
    ) -> None:
        self.uri = uri
        self.database_name = database
        self.app_name = app_name
        self.timeout_ms = int(timeout_seconds * 1000)
        self.socket_timeout_ms = int(socket_timeout_seconds * 1000)
        self._client: MongoClient | None = None
        self._lock = threading.Lock()
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (ref := reference()) and ref._forget())

    def _forget(self) -> None:
        # The parent's sockets and monitor threads are not ours to use or close after fork().
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self) -> MongoClient:
        """This process's client (created on first access, thread-safe)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = MongoClient(
                        self.uri,
                        appname=self.app_name,
                        tz_aware=True,
                        uuidRepresentation="standard",
                        serverSelectionTimeoutMS=self.timeout_ms,
                        connectTimeoutMS=self.timeout_ms,
                        socketTimeoutMS=self.socket_timeout_ms,
                    )
        return self._client

    @property
    def db(self) -> Database:
        """The service's database."""
        return self.client[self.database_name]

    def ping(self) -> None:
        """Round-trip to the server; raises ``pymongo.errors.PyMongoError`` when it does not answer."""
        self.db.command("ping")

    def ensure_indexes(self, declarations: Iterable[Indexes], *, attempts: int = 10) -> None:
        """Create every declared index that does not exist yet (idempotent).

        Several processes start at once (gunicorn workers, the worker process, replicas). FerretDB
        1.24 drops the connection when two create the same index concurrently, so only missing
        indexes are created and a dropped connection is retried after a short pause.
        """
        for declaration in declarations:
            for attempt in range(1, attempts + 1):
                try:
                    collection = self.db[declaration.collection]
                    existing = set(collection.index_information())
                    missing = [model for model in declaration.models if model.document["name"] not in existing]
                    if missing:
                        collection.create_indexes(missing)
                    break
                except (AutoReconnect, OperationFailure):
                    if attempt == attempts:
                        raise
                    time.sleep(0.1 * attempt)

    def close(self) -> None:
        """Close this process's pool, if one was opened."""
        if self._client is not None:
            self._client.close()
            self._client = None
