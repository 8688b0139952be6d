"""Per-document mutual exclusion across processes and replicas, for read-modify-write.

FerretDB 1.x applies every update as "query, modify in Go, write the whole document back by
``_id``" with nothing holding the two steps together (read in its v1.24.2 source, and checked
here: four concurrent ``find_one_and_update`` calls with the same condition all "win", as do
four ``update_one`` calls filtered on the same version). So on FerretDB a conditional update is
no compare-and-swap, and two writers of one document can silently undo each other, even a
``$set`` and a ``$pull`` on different fields. MongoDB makes single-document updates atomic;
FerretDB as released does not. The FerretDB scripts/bootstrap builds now does
(scripts/patches/ferretdb-v1.24.2-write-lock.patch), which makes these locks redundant there;
they go when the code that takes them is simplified (issue 19).

The one atomic primitive both have is a unique insert. :class:`DocumentLocks` builds a lease on
it: whoever inserts ``{_id: key}`` into ``locks`` holds the key until it deletes the document. A
holder that crashed is superseded once its lease expires. Every read-modify-write of a shared
document happens inside ``with locks.hold(key):``; inserts of new documents need no lock.

Known limit: two processes breaking the same expired lease at the same instant can, in a window of
a few milliseconds, both end up holding it (FerretDB's delete is itself a query then a delete).
That needs a crashed holder *and* a race between two successors; the lease (30 s) is far longer
than any request (gunicorn's timeout), so a live holder never loses its lock this way.
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
        deadline = time.monotonic() + self.wait_seconds
        pause = 0.001
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
            if time.monotonic() > deadline:
                raise LockTimeout(key)
            time.sleep(pause)
            pause = min(pause * 2, 0.025)
        try:
            yield
        finally:
            locks.delete_one({"_id": key, "owner": owner})
