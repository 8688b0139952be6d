"""The transactional outbox, without transactions (DESIGN §5: an acknowledged write's event
reaches the broker even if the broker or the process is down at write time).

FerretDB and a standalone MongoDB have no multi-document transactions, so a write and its
events must share one document: each event is stored *inside the written document*, in its
``_outbox`` array, by the same single-document operation that makes the change. Either both
happen or neither does. A delete becomes a tombstone (``_deleted: true`` plus the event) that
is removed once its last event is published.

The publisher's removal of sent events (``$pull``) and a service's next change of the same
document (``$push`` with its own ``$set``) need nothing holding them apart: each is one
single-document update, atomic on MongoDB and on the FerretDB this project builds (each write
command holds its collection; scripts/patches/ferretdb-v1.24.2-write-lock.patch).

To find pending events without scanning, the same write also marks the document: 
``_outbox_pending: true`` (indexed, so the relay's equality query reads only marked documents),
``_outbox_due`` (when the relay may take it: a moment after the write, leaving it to the
dispatcher first), ``_outbox_since`` (the oldest unpublished write, for the lag metric) and
``_outbox_attempts``. The marks go with the events, in the one operation, so no crash can leave
events the relay does not know about. They are removed once the last event is out.

After the write, :class:`Dispatcher` publishes the events from memory on a background thread
of the same process (the request never waits for the broker) and pulls each confirmed event out
of ``_outbox``. Whatever it misses (broker down, process killed) the
:class:`~taskflow_common.events.relay.Relay` finds by the marks and publishes.
Delivery is therefore at least once: consumers skip event ids they have already applied, looking
them up for every message but the hand-off's first delivery within :data:`HANDOFF_WINDOW` of
the event's time (DESIGN §5).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import PyMongoError

from ..mongo import Indexes
from .envelope import Event, MalformedEvent
from .publisher import Publisher, PublishFailed, Unroutable

log = logging.getLogger(__name__)

OUTBOX_FIELD = "_outbox"
TOMBSTONE_FIELD = "_deleted"
PENDING_FIELD = "_outbox_pending"
DUE_FIELD = "_outbox_due"
SINCE_FIELD = "_outbox_since"
ATTEMPTS_FIELD = "_outbox_attempts"
MARKS = (PENDING_FIELD, DUE_FIELD, SINCE_FIELD, ATTEMPTS_FIELD)
WITHOUT_EVENTS = dict.fromkeys((OUTBOX_FIELD, *MARKS), 0)
"""A projection leaving out a document's events and their marks."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HANDOFF_WINDOW = timedelta(seconds=5)
"""How long the relay leaves a new write's events to the dispatcher (:class:`Outbox`'s default)."""
LEGACY_POINTERS = "outbox"
"""Where earlier versions recorded a pointer before each write; the relay adopts them (see
:meth:`OutboxStore.adopt_legacy_pointers`)."""


def indexes(collections: Sequence[str]) -> tuple[Indexes, ...]:
    """The index the relay's query needs on each collection whose documents carry events."""
    return tuple(Indexes(collection, (IndexModel([(PENDING_FIELD, ASCENDING)]),)) for collection in collections)


def stored(event: Event) -> dict[str, str]:
    """How an event sits in a document's ``_outbox``: its id (to pull it) and its encoded body."""
    return {"id": event.id, "body": event.encode().decode()}


@dataclass(frozen=True)
class Pending:
    """A document with unpublished events, as the relay found it."""

    collection: str
    document_id: Any
    due: datetime | None
    attempts: int


class OutboxStore:
    """Every MongoDB query of the outbox, on the database ``db()`` returns (resolved per call, fork-safe).

    Args:
        db: the service's database.
        collections: the collections whose documents carry events.
    """

    def __init__(self, db: Callable[[], Database], collections: Sequence[str] = ()) -> None:
        self._db = db
        self.collections = tuple(collections)

    def pending(self, collection: str) -> list[Pending]:
        """Every document of ``collection`` marked pending (one equality query on the index)."""
        found = self._db()[collection].find({PENDING_FIELD: True}, {DUE_FIELD: 1, ATTEMPTS_FIELD: 1})
        return [Pending(collection, doc["_id"], doc.get(DUE_FIELD), doc.get(ATTEMPTS_FIELD) or 0) for doc in found]

    def claim(self, pending: Pending, until: datetime) -> bool:
        """Reserve a pending document for this relay until ``until`` (a lease: other relay replicas
        skip it), if nobody else moved its due time since it was read; True if reserved."""
        result = self._db()[pending.collection].update_one(
            {"_id": pending.document_id, PENDING_FIELD: True, DUE_FIELD: pending.due}, {"$set": {DUE_FIELD: until}}
        )
        return result.matched_count == 1

    def reschedule(self, pending: Pending, at: datetime) -> None:
        """After a failed publish: try again at ``at``, one more attempt counted."""
        self._db()[pending.collection].update_one(
            {"_id": pending.document_id, PENDING_FIELD: True}, {"$set": {DUE_FIELD: at}, "$inc": {ATTEMPTS_FIELD: 1}}
        )

    def pending_events(self, collection: str, document_id: Any) -> tuple[list[dict[str, str]], bool]:
        """The document's unpublished events in write order, and whether it is a tombstone."""
        document = self._db()[collection].find_one({"_id": document_id}, {OUTBOX_FIELD: 1, TOMBSTONE_FIELD: 1})
        if document is None:
            return [], False
        return list(document.get(OUTBOX_FIELD) or []), bool(document.get(TOMBSTONE_FIELD))

    def mark_sent(
        self, collection: str, document_id: Any, items: Sequence[dict[str, str]], *, tombstone: bool = False
    ) -> None:
        """Take confirmed events (each exactly as stored) out of the document's ``_outbox``; once
        none is left, remove the marks, or the document itself if it is a tombstone.

        When the document holds exactly ``items`` (and is no tombstone), one conditional update
        empties it and removes the marks. Otherwise ``$pullAll`` removes exactly the stored values
        (FerretDB 1.24 evaluates no condition inside ``$pull``: ``{$pull: {f: {$in: [...]}}}``
        silently removes nothing), and the last step is conditional on ``_outbox`` being empty, so
        events a concurrent write just added keep their marks.

        Args:
            tombstone: with no ``items``: whether the document is known to be a tombstone.
        """
        documents = self._db()[collection]
        if items:
            # The common case in one write: the document holds exactly these events and is no tombstone.
            finished = documents.update_one(
                {"_id": document_id, OUTBOX_FIELD: list(items), TOMBSTONE_FIELD: {"$ne": True}},
                {"$set": {OUTBOX_FIELD: []}, "$unset": dict.fromkeys(MARKS, "")},
            )
            if finished.matched_count:
                return
            # Without a projection: FerretDB 1.24's findAndModify refuses one (NotImplemented).
            left = documents.find_one_and_update(
                {"_id": document_id}, {"$pullAll": {OUTBOX_FIELD: list(items)}}, return_document=ReturnDocument.AFTER
            )
            if left is None or left.get(OUTBOX_FIELD):
                return  # gone, or events still to publish
            tombstone = bool(left.get(TOMBSTONE_FIELD))
        if tombstone:
            documents.delete_one({"_id": document_id, TOMBSTONE_FIELD: True, OUTBOX_FIELD: []})
        else:
            documents.update_one({"_id": document_id, OUTBOX_FIELD: []}, {"$unset": dict.fromkeys(MARKS, "")})

    def adopt_legacy_pointers(self, now: datetime, grace: timedelta) -> int:
        """Mark the documents that pointers of an earlier version name, when they hold events (or
        are tombstones); drop each pointer once it is older than ``grace``. An earlier version
        recorded the pointer *before* its write, so until then the write may still land (even
        after the document was marked for older events and cleared again): the pointer is looked
        at on every pass meanwhile. Replicas of the earlier version may go on writing during a
        rolling upgrade; the relay calls this on every pass. Marking moves the due time only
        earlier, so a relay's lease or back-off is kept. Returns how many were marked."""
        db = self._db()
        adopted = 0
        for pointer in db[LEGACY_POINTERS].find({}):
            created = pointer.get("created_at") or now
            marks = {"$set": {PENDING_FIELD: True}, "$min": {DUE_FIELD: now, SINCE_FIELD: created}}
            unpublished = {"_id": pointer["document_id"],
                           "$or": [{f"{OUTBOX_FIELD}.0": {"$exists": True}}, {TOMBSTONE_FIELD: True}]}
            marked = db[pointer["collection"]].update_one(unpublished, marks).matched_count
            adopted += marked
            if now - created >= grace:
                db[LEGACY_POINTERS].delete_one({"_id": pointer["_id"]})
        return adopted

    def adopt_orphans(self, now: datetime) -> int:
        """Mark the documents that hold events but no mark: what an earlier version left when
        its write was reported failed yet applied (it deleted its pointer; the events stayed).
        Found by a read (no index has them), each marked by ``_id`` while still unmarked, so the
        collection is not locked for the scan. Returns how many were marked."""
        adopted = 0
        orphaned = {f"{OUTBOX_FIELD}.0": {"$exists": True}, PENDING_FIELD: {"$ne": True}}
        for collection in self.collections:
            documents = self._db()[collection]
            for document in list(documents.find(orphaned, {"_id": 1})):
                marks = {"$set": {PENDING_FIELD: True, DUE_FIELD: now, SINCE_FIELD: now, ATTEMPTS_FIELD: 0}}
                adopted += documents.update_one({"_id": document["_id"], **orphaned}, marks).matched_count
        return adopted

    def depth(self) -> tuple[int, datetime | None]:
        """Documents with unpublished events, and when the oldest such write was made."""
        count, oldest = 0, None
        for collection in self.collections:
            for document in self._db()[collection].find({PENDING_FIELD: True}, {SINCE_FIELD: 1}):
                count += 1
                since = document.get(SINCE_FIELD)
                if since is not None and (oldest is None or since < oldest):
                    oldest = since
        return count, oldest


def publish_pending(store: OutboxStore, publisher: Publisher, collection: str, document_id: Any) -> int:
    """Publish every pending event of one document, read from the document (the relay's way).

    Returns and raises as :func:`publish_stored`.
    """
    events, tombstone = store.pending_events(collection, document_id)
    return publish_stored(store, publisher, collection, document_id, events, tombstone=tombstone)


def publish_stored(
    store: OutboxStore,
    publisher: Publisher,
    collection: str,
    document_id: Any,
    items: Sequence[dict[str, str]],
    *,
    tombstone: bool = False,
    handoff: bool = False,
) -> int:
    """Publish ``items`` (events exactly as stored in the document's ``_outbox``, in write order),
    each confirmed, then pull the published ones out of the document.

    An unroutable event (no queue bound for its type yet) stays pending without holding back the
    document's later events: routing is per type, and order per entity is not promised (DESIGN
    §5), so e.g. ``user.deactivated`` reaches its subscribers while nobody subscribes to the
    ``user.registered`` written before it.

    Args:
        tombstone: with no ``items``: the document is known to be a tombstone (it is deleted).
        handoff: the dispatcher's publication right after the write, marked as the events' first
            (:data:`~.publisher.FIRST_PUBLICATION_HEADER`); the relay's never is.

    Returns:
        how many events were published.

    An item that is not an event is logged and taken out with the published ones.

    Raises:
        Unroutable: some events had no queue; they stay pending, the others were published.
        PublishFailed: the broker did not take an event; it and those after it stay pending.
    """
    published: list[dict[str, str]] = []
    dropped: list[dict[str, str]] = []
    unroutable: Unroutable | None = None
    try:
        for item in items:
            try:
                body = item["body"].encode()
                event = Event.decode(body)
            except (KeyError, TypeError, AttributeError, MalformedEvent) as error:
                # Not an event (a hand edit, a bug): it can never be published, and must not
                # hold back the events stored after it. Taken out with the published ones.
                log.error("outbox %s/%s: dropping an item that is not an event (%s): %r",
                          collection, document_id, error, item)
                dropped.append(item)
                continue
            try:
                publisher.publish(event, body, first=handoff)
            except Unroutable as error:
                unroutable = error
                continue
            published.append(item)
    finally:
        if published or dropped or not items:
            store.mark_sent(collection, document_id, [*published, *dropped], tombstone=tombstone)
    if unroutable is not None:
        raise unroutable
    return len(published)


@dataclass(frozen=True)
class _Handoff:
    collection: str
    document_id: Any
    items: Sequence[dict[str, str]]


class Dispatcher:
    """Publishes each committed write's events right after the write, off the request thread,
    from memory: the events as the write stored them, without reading the document back.

    One daemon thread and one broker connection per process, started on first use (also after a
    fork). Best effort by design: when the broker is down or the queue is full, the write is left
    to the relay, which finds it by its marks.

    Args:
        store: the service's outbox store.
        publisher_factory: makes this thread's :class:`Publisher`.
        capacity: hand-offs waiting at most; beyond that they are left to the relay.
    """

    def __init__(self, store: OutboxStore, publisher_factory: Callable[[], Publisher], *, capacity: int = 10_000):
        self.store = store
        self.publisher_factory = publisher_factory
        self.capacity = capacity
        self._queue: queue.Queue[_Handoff] | None = None
        self._pid: int | None = None
        self._thread = threading.Thread()  # not started: the first hand-off starts the real one
        self._lock = threading.Lock()

    def handoff(self, collection: str, document_id: Any, items: Sequence[dict[str, str]]) -> None:
        """Queue a committed write's events (``items``, exactly as stored) for publishing; never blocks."""
        try:
            self._ensure_running().put_nowait(_Handoff(collection, document_id, items))
        except queue.Full:
            log.warning("outbox hand-off queue full; the relay will publish %s/%s", collection, document_id)

    def _ensure_running(self) -> queue.Queue[_Handoff]:
        # A new thread after a fork (threads do not survive it) or should the thread have ended
        # (what it held is left to the relay).
        if self._pid != os.getpid() or not self._thread.is_alive():
            with self._lock:
                if self._pid != os.getpid() or not self._thread.is_alive():
                    self._queue = queue.Queue(self.capacity)
                    self._thread = threading.Thread(target=self._run, args=(self._queue,), name="outbox-dispatcher",
                                                    daemon=True)
                    self._thread.start()
                    self._pid = os.getpid()
        assert self._queue is not None
        return self._queue

    def _run(self, handoffs: queue.Queue[_Handoff]) -> None:
        publisher = self.publisher_factory()
        # After a failure, skip the broker for a moment: the relay retries with back-off anyway,
        # and a dead broker must not make hand-offs pile up behind connection timeouts.
        broker_down_until = 0.0
        while True:
            try:
                handoff = handoffs.get(timeout=1.0)
            except queue.Empty:
                publisher.keepalive()
                continue
            if time.monotonic() < broker_down_until:
                continue
            try:
                publish_stored(self.store, publisher, handoff.collection, handoff.document_id, handoff.items,
                               handoff=True)
            except PublishFailed as error:
                broker_down_until = time.monotonic() + 1.0
                log.info("hand-off of %s/%s left to the relay: %s", handoff.collection, handoff.document_id, error)
            except Exception:  # noqa: BLE001 (the thread serves every later hand-off of the process)
                log.exception("hand-off of %s/%s left to the relay", handoff.collection, handoff.document_id)


class PendingWrite:
    """One write's events, as the fields to store with it. Built by :meth:`Outbox.write`.

    Args:
        events: the write's events.
        now: the moment of the write (UTC).
        due: when the relay may take the events, if the dispatcher has not published them.
    """

    def __init__(self, events: Sequence[Event], now: datetime, due: datetime) -> None:
        self.events = list(events)
        self.items = [stored(event) for event in self.events]
        """The events as stored: encoded once, so the dispatcher pulls exactly what was written."""
        self.now = now
        self.due = due

    @property
    def insert_fields(self) -> dict[str, Any]:
        """Fields to add to a document being inserted: its events and the marks."""
        return {OUTBOX_FIELD: list(self.items), PENDING_FIELD: True, DUE_FIELD: self.due, SINCE_FIELD: self.now,
                ATTEMPTS_FIELD: 0}

    def update(self, update: dict[str, Any]) -> dict[str, Any]:
        """``update`` (the write's own update operators) with the events and the marks added."""
        merged = {operator: dict(fields) for operator, fields in update.items()}
        merged.setdefault("$push", {})[OUTBOX_FIELD] = {"$each": list(self.items)}
        merged.setdefault("$set", {})[PENDING_FIELD] = True
        # $min: a document already due (or leased, or backing off) is never put off by a new write.
        merged.setdefault("$min", {}).update({SINCE_FIELD: self.now, DUE_FIELD: self.due})
        return merged

    def tombstone(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The update that turns a document into a tombstone carrying the events, setting ``fields`` too."""
        return self.update({"$set": {**fields, TOMBSTONE_FIELD: True}})


class Outbox:
    """A service's outbox: ``with outbox.write(collection, id, events) as pending: <the write>``.

    The body must make exactly one single-document write that includes ``pending.insert_fields``
    or ``pending.update(...)``, and raise if that write did not happen (e.g. a version
    mismatch). On a normal exit the events are handed to the dispatcher; on an exception nothing
    was written and the exception propagates. An update that depends on what was read must be
    conditional (on the document's ``version``, say), so that a concurrent change makes it match
    nothing instead of undoing it.

    Args:
        store: the service's outbox store.
        dispatcher: publishes right after the write; None leaves everything to the relay.
        handoff_seconds: how long the relay leaves a new write to the dispatcher.
    """

    def __init__(
        self, store: OutboxStore, dispatcher: Dispatcher | None = None, *,
        handoff_seconds: float = HANDOFF_WINDOW.total_seconds(),
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.handoff_seconds = handoff_seconds

    def write(self, collection: str, document_id: Any, events: Sequence[Event]) -> _WriteContext:
        now = datetime.now(UTC)
        pending = PendingWrite(events, now, now + timedelta(seconds=self.handoff_seconds))
        return _WriteContext(self, collection, document_id, pending)


class _WriteContext:
    def __init__(self, outbox: Outbox, collection: str, document_id: Any, pending: PendingWrite) -> None:
        self.outbox = outbox
        self.collection = collection
        self.document_id = document_id
        self.pending = pending

    def __enter__(self) -> PendingWrite:
        return self.pending

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None and self.outbox.dispatcher is not None:
            self.outbox.dispatcher.handoff(self.collection, self.document_id, self.pending.items)


class OutboxCollector(Collector):
    """Prometheus gauges: ``outbox_pending`` and ``outbox_oldest_pending_age_seconds``.

    Read from the database at most every ``refresh_seconds``: on FerretDB the read costs one
    document decoded per pending write, which a backlog during a broker outage makes large, and
    several scrapers may ask every few seconds.
    """

    def __init__(self, store: OutboxStore, *, refresh_seconds: float = 30.0) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._read: tuple[float, int, datetime | None] | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._read is None or time.monotonic() - self._read[0] >= self.refresh_seconds:
                try:
                    self._read = (time.monotonic(), *self.store.depth())
                except PyMongoError:
                    return
            _, count, oldest = self._read
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("outbox_pending", "Documents whose events are not yet all published.", value=count)
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds", "Age of the oldest write with unpublished events (relay lag).", value=age
        )
