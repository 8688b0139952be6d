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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import PyMongoError

from .mongo import Indexes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expiry:
    """Documents of ``collection`` are deleted once the date in ``field`` is ``after`` in the past.

    ``marker`` names a boolean field that is true on every document that can expire, when they
    are few among many (placeholders among tasks): the sweep then reads only those, by equality
    (the one kind of condition FerretDB answers from an index).
    """

    collection: str
    field: str
    after: timedelta = timedelta(0)
    marker: str | None = None

    def indexes(self, *, ttl: bool) -> Indexes:
        """The index on ``field``: a TTL index when the engine enforces them (``ttl``), else one
        for the sweep (on ``marker`` and ``field``). The TTL index and a plain one on ``field``
        alone are both named ``<field>_1``, so one replaces the other's declaration on the same engine."""
        if ttl:
            return Indexes(self.collection, (IndexModel([(self.field, ASCENDING)],
                                                        expireAfterSeconds=int(self.after.total_seconds())),))
        keys = [(self.marker, ASCENDING)] if self.marker else []
        return Indexes(self.collection, (IndexModel([*keys, (self.field, ASCENDING)]),))

    def expired(self, now: datetime) -> dict[str, Any]:
        """The filter of the documents expired at ``now``."""
        return {**({self.marker: True} if self.marker else {}), self.field: {"$lt": now - self.after}}


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
        interval_seconds: time between sweeps, at least; a sweep that took ``t`` seconds is
            followed by ``9 t`` of rest. On FerretDB a sweep reads the whole collection (it pushes
            no range filter down to its storage) unless the expiry has a ``marker``.
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
        """Delete every document expired by now, collection by collection; how many were deleted.

        Expired documents are found by a read, then deleted one by one by ``_id`` (and still
        expired): a ``delete_many`` with the date condition would hold FerretDB's collection lock
        while it reads the whole collection, stalling every write of it meanwhile.
        """
        now = self.clock()
        deleted = 0
        for expiry in self.expiries:
            collection = self.db()[expiry.collection]
            condition = expiry.expired(now)
            for document in list(collection.find(condition, {"_id": 1})):
                deleted += collection.delete_one({"_id": document["_id"], **condition}).deleted_count
        return deleted

    def run(self, stop: threading.Event) -> None:
        """Sweep until ``stop`` is set. A failed sweep (database down, or anything else) is logged
        and retried at the next interval."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                deleted = self.sweep()
                if deleted:
                    log.info("housekeeping: %d expired documents deleted", deleted)
            except PyMongoError as error:
                log.warning("housekeeping: sweep failed, retrying in %.0f s: %s", self.interval_seconds, error)
            except Exception:  # the next sweep may succeed; the loop must not end
                log.exception("housekeeping: sweep failed, retrying in %.0f s", self.interval_seconds)
            swept = time.monotonic() - started
            stop.wait(max(self.interval_seconds, 9 * swept))  # at most a tenth of the time sweeping
