"""Bounded housekeeping: documents that expire, by a TTL index on MongoDB and by a sweep on FerretDB.

A service declares each kind of document that must not outlive its use as an :class:`Expiry`:
the collection, the date field and how long after that date the document goes. MongoDB deletes
such documents itself once the field is declared as a TTL index (``expireAfterSeconds``; its TTL
monitor runs every 60 s, https://www.mongodb.com/docs/manual/core/index-ttl/). FerretDB 1.24
refuses that index option (``NotImplemented``), so on it the same declaration becomes a plain
index on the field. :class:`Sweeper`, a loop of each service's worker, deletes what the TTL
monitor would, on every engine: on MongoDB it finds nothing to do, except where a plain index of
an earlier version already holds the TTL index's name (``ensure_indexes`` keeps it), which
no TTL monitor would serve. Either way only dates count: a document whose field is missing,
null or not a date never expires (as with a TTL index).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import PyMongoError

from .mongo import Indexes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expiry:
    """Documents of ``collection`` are deleted once the date in ``field`` is ``after`` in the past."""

    collection: str
    field: str
    after: timedelta = timedelta(0)

    def indexes(self, *, ttl: bool) -> Indexes:
        """The index on ``field``: a TTL index when the engine enforces them (``ttl``), else a
        plain one for the sweep. Both are named ``<field>_1``, so one replaces the other's
        declaration on the same engine."""
        options = {"expireAfterSeconds": int(self.after.total_seconds())} if ttl else {}
        return Indexes(self.collection, (IndexModel([(self.field, ASCENDING)], **options),))


def enforces_ttl(db: Database) -> bool:
    """Whether the server behind ``db`` deletes expired documents of TTL indexes (MongoDB does;
    FerretDB, which names itself in ``buildInfo``, does not)."""
    return "ferretdbVersion" not in db.client.admin.command("buildInfo")


def expiry_indexes(db: Database, expiries: Sequence[Expiry]) -> list[Indexes]:
    """The index declarations of ``expiries`` for the engine behind ``db`` (asks it once)."""
    if not expiries:
        return []
    ttl = enforces_ttl(db)
    return [expiry.indexes(ttl=ttl) for expiry in expiries]


class Sweeper:
    """Deletes expired documents every ``interval_seconds`` where the engine does not.

    Args:
        db: the service's database, resolved per call.
        expiries: what expires.
        interval_seconds: time between sweeps. On FerretDB each sweep reads the whole collection
            (it pushes no range filter down to its storage), hence minutes, not seconds.
        clock: the current time (UTC); tests move it.
    """

    def __init__(
        self,
        db: Callable[[], Database],
        expiries: Sequence[Expiry],
        *,
        interval_seconds: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.expiries = tuple(expiries)
        self.interval_seconds = interval_seconds
        self.clock = clock

    def sweep(self) -> int:
        """Delete every document expired by now, collection by collection; how many were deleted."""
        now = self.clock()
        deleted = 0
        for expiry in self.expiries:
            result = self.db()[expiry.collection].delete_many({expiry.field: {"$lt": now - expiry.after}})
            deleted += result.deleted_count
        return deleted

    def run(self, stop: threading.Event) -> None:
        """Sweep until ``stop`` is set. A failed sweep (database down) is logged and retried at
        the next interval."""
        while not stop.is_set():
            try:
                deleted = self.sweep()
                if deleted:
                    log.info("housekeeping: %d expired documents deleted", deleted)
            except PyMongoError as error:
                log.warning("housekeeping: sweep failed, retrying in %.0f s: %s", self.interval_seconds, error)
            stop.wait(self.interval_seconds)
