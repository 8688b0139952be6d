"""A lease on a key, for an invariant that spans documents (the one TaskFlow has: "an active admin
remains", in auth).

A change of one document needs no lock: it is one conditional update (on a ``version``, a state,
a claim field), atomic on MongoDB and on the FerretDB this project builds, whose patch makes each
write command hold its collection (scripts/patches/ferretdb-v1.24.2-write-lock.patch; FerretDB as
released is not atomic there, see tests/test_ferretdb_writes.py). Without transactions, a rule
over several documents, like counting the active admins before demoting one, still needs its
writers serialized; :class:`DocumentLocks` does that.

The one atomic primitive it needs is a unique insert: whoever inserts ``{_id: key}`` into
``locks`` holds the key until it deletes the document. A holder that crashed is superseded once
its lease expires; the lease (30 s) is longer than any request (gunicorn's timeout), so a live
holder never loses its lock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from .problems import ServiceUnavailable

COLLECTION = "locks"


class LockTimeout(ServiceUnavailable):
    """The document stayed locked for longer than a request should wait (503, retry shortly)."""

    def __init__(self, key: str) -> None:
        super().__init__("The resource is busy; retry shortly.", headers={"Retry-After": "1"})
        self.key = key


class Backoff:
    """The pauses between tries of something another holder keeps busy: 1 ms, doubling up to
    25 ms, for at most ``seconds`` in all."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.pause = 0.001

    def wait(self) -> bool:
        """Sleep before the next try; False, without sleeping, once the time is up."""
        if time.monotonic() > self.deadline:
            return False
        time.sleep(self.pause)
        self.pause = min(self.pause * 2, 0.025)
        return True


class DocumentLocks:
    """Leases on keys, stored in a service's own ``locks`` collection.

    Args:
        db: the service's database, resolved per call (fork-safe).
        lease_seconds: how long a lock outlives a holder that died without releasing it.
        wait_seconds: how long :meth:`hold` waits for a busy key before giving up.
    """

    def __init__(self, db: Callable[[], Database], *, lease_seconds: float = 30.0, wait_seconds: float = 5.0) -> None:
        self._db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.wait_seconds = wait_seconds

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold ``key`` for the block.

        Raises:
            LockTimeout: another holder kept it for ``wait_seconds``.
        """
        locks = self._db()[COLLECTION]
        owner = uuid.uuid4().hex
        backoff = Backoff(self.wait_seconds)
        while True:
            now = datetime.now(UTC)
            try:
                locks.insert_one({"_id": key, "owner": owner, "expires_at": now + self.lease})
                break
            except DuplicateKeyError:
                holder = locks.find_one({"_id": key})
                if holder is not None and holder["expires_at"] <= now:
                    locks.delete_one({"_id": key, "owner": holder["owner"]})  # its holder died
                    continue
            if not backoff.wait():
                raise LockTimeout(key)
        try:
            yield
        finally:
            locks.delete_one({"_id": key, "owner": owner})
