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

To find pending events without scanning every collection, each write first records a small
*pointer* (``outbox`` collection: collection name + document id). The order matters: pointer,
then write. A crash after the pointer but before the write leaves a pointer to a document with
no pending events, which the relay discards; the reverse order could lose track of a write.

After the write, :class:`Dispatcher` publishes the events from memory on a background thread
of the same process (the request never waits for the broker), pulls each confirmed event out
of ``_outbox`` and deletes the pointer. Whatever it misses (broker down, process killed) the
:class:`~taskflow_common.events.relay.Relay` finds through the pointers and publishes.
Delivery is therefore at least once: consumers skip event ids they have already applied.
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

from bson import ObjectId
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import PyMongoError

from ..mongo import Indexes
from .envelope import Event
from .publisher import PublishFailed, Publisher, Unroutable

log = logging.getLogger(__name__)

OUTBOX_FIELD = "_outbox"
TOMBSTONE_FIELD = "_deleted"
POINTERS = "outbox"
INDEXES = Indexes(POINTERS, (IndexModel([("next_attempt_at", ASCENDING)]), IndexModel([("created_at", ASCENDING)])))
"""The pointers' indexes; a service creates them with its own at start-up."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stored(event: Event) -> dict[str, str]:
    """How an event sits in a document's ``_outbox``: its id (to pull it) and its encoded body."""
    return {"id": event.id, "body": event.encode().decode()}


@dataclass(frozen=True)
class Pointer:
    """A write that may have left events to publish in ``collection``/``document_id``."""

    id: ObjectId
    collection: str
    document_id: Any
    created_at: datetime
    attempts: int


class OutboxStore:
    """Every MongoDB query of the outbox, on the database ``db()`` returns (resolved per call, fork-safe)."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    def add_pointer(self, collection: str, document_id: Any, handoff_seconds: float) -> ObjectId:
        """Record that a write to ``collection``/``document_id`` is about to happen."""
        now = datetime.now(UTC)
        pointer = {
            "_id": ObjectId(),
            "collection": collection,
            "document_id": document_id,
            "created_at": now,
            "next_attempt_at": now + timedelta(seconds=handoff_seconds),
            "lease_until": EPOCH,
            "attempts": 0,
        }
        self._db()[POINTERS].insert_one(pointer)
        return pointer["_id"]

    def remove_pointer(self, pointer_id: ObjectId) -> None:
        self._db()[POINTERS].delete_one({"_id": pointer_id})

    def due(self, now: datetime, limit: int) -> list[ObjectId]:
        """Up to ``limit`` pointers due by ``now`` and not leased, most overdue first (one scan)."""
        found = self._db()[POINTERS].find(
            {"next_attempt_at": {"$lte": now}, "lease_until": {"$lte": now}}, {"_id": 1}
        ).sort("next_attempt_at", ASCENDING).limit(limit)
        return [pointer["_id"] for pointer in found]

    def claim(self, pointer_id: ObjectId, now: datetime, lease_seconds: float) -> Pointer | None:
        """Lease one due pointer for ``lease_seconds`` so other relay replicas skip it; None if taken."""
        found = self._db()[POINTERS].find_one_and_update(
            {"_id": pointer_id, "next_attempt_at": {"$lte": now}, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + timedelta(seconds=lease_seconds)}},
            return_document=ReturnDocument.AFTER,
        )
        if found is None:
            return None
        return Pointer(found["_id"], found["collection"], found["document_id"], found["created_at"], found["attempts"])

    def reschedule(self, pointer: Pointer, at: datetime, *, failed: bool) -> None:
        """Release ``pointer`` until ``at``; ``failed`` counts a publishing failure."""
        update: dict[str, Any] = {"$set": {"next_attempt_at": at, "lease_until": EPOCH}}
        if failed:
            update["$inc"] = {"attempts": 1}
        self._db()[POINTERS].update_one({"_id": pointer.id}, update)

    def pending_events(self, collection: str, document_id: Any) -> tuple[list[dict[str, str]], bool]:
        """The document's unpublished events in write order, and whether it is a tombstone."""
        document = self._db()[collection].find_one({"_id": document_id}, {OUTBOX_FIELD: 1, TOMBSTONE_FIELD: 1})
        if document is None:
            return [], False
        return list(document.get(OUTBOX_FIELD) or []), bool(document.get(TOMBSTONE_FIELD))

    def mark_sent(self, collection: str, document_id: Any, items: Sequence[dict[str, str]]) -> None:
        """Take confirmed events (each exactly as stored) out of the document's ``_outbox``; then
        delete the document if it is a tombstone with nothing left to publish.

        ``$pullAll`` removes exactly the stored values, in one update. (FerretDB 1.24 evaluates
        no condition inside ``$pull``: ``{$pull: {f: {$in: [...]}}}`` silently removes nothing.)
        """
        documents = self._db()[collection]
        if items:
            # Without a projection: FerretDB 1.24's findAndModify refuses one (NotImplemented).
            left = documents.find_one_and_update(
                {"_id": document_id}, {"$pullAll": {OUTBOX_FIELD: list(items)}}, return_document=ReturnDocument.AFTER
            )
            if left is None or not left.get(TOMBSTONE_FIELD) or left.get(OUTBOX_FIELD):
                return  # gone, or not a tombstone, or events still to publish
        documents.delete_one({"_id": document_id, TOMBSTONE_FIELD: True, OUTBOX_FIELD: []})

    def depth(self) -> tuple[int, datetime | None]:
        """Pointers not yet cleared, and when the oldest was created."""
        pointers = self._db()[POINTERS]
        oldest = pointers.find_one({}, {"created_at": 1}, sort=[("created_at", ASCENDING)])
        return pointers.count_documents({}), oldest["created_at"] if oldest else None


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
) -> int:
    """Publish ``items`` (events exactly as stored in the document's ``_outbox``, in write order),
    each confirmed, then pull the published ones out of the document.

    An unroutable event (no queue bound for its type yet) stays pending without holding back the
    document's later events: routing is per type, and order per entity is not promised (DESIGN
    §5), so e.g. ``user.deactivated`` reaches its subscribers while nobody subscribes to the
    ``user.registered`` written before it.

    Args:
        tombstone: the document is known to be a tombstone, so it is checked for deletion even
            when nothing was published.

    Returns:
        how many events were published.

    Raises:
        Unroutable: some events had no queue; they stay pending, the others were published.
        PublishFailed: the broker did not take an event; it and those after it stay pending.
    """
    published = []
    unroutable: Unroutable | None = None
    try:
        for item in items:
            body = item["body"].encode()
            try:
                publisher.publish(Event.decode(body), body)
            except Unroutable as error:
                unroutable = error
                continue
            published.append(item)
    finally:
        if published or tombstone:
            store.mark_sent(collection, document_id, published)
    if unroutable is not None:
        raise unroutable
    return len(published)


@dataclass(frozen=True)
class _Handoff:
    pointer_id: ObjectId
    collection: str
    document_id: Any
    items: Sequence[dict[str, str]]


class Dispatcher:
    """Publishes each committed write's events right after the write, off the request thread,
    from memory: the events as the write stored them, without reading the document back.

    One daemon thread and one broker connection per process, started on first use (also after a
    fork). Best effort by design: when the broker is down or the queue is full, the write is left
    to the relay, which finds it through its pointer.

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
        self._lock = threading.Lock()

    def handoff(self, pointer_id: ObjectId, collection: str, document_id: Any, items: Sequence[dict[str, str]]) -> None:
        """Queue a committed write's events (``items``, exactly as stored) for publishing; never blocks."""
        try:
            self._ensure_running().put_nowait(_Handoff(pointer_id, collection, document_id, items))
        except queue.Full:
            log.warning("outbox hand-off queue full; the relay will publish %s/%s", collection, document_id)

    def _ensure_running(self) -> queue.Queue[_Handoff]:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.Queue(self.capacity)
                    threading.Thread(target=self._run, args=(self._queue,), name="outbox-dispatcher", daemon=True).start()
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
                publish_stored(self.store, publisher, handoff.collection, handoff.document_id, handoff.items)
                self.store.remove_pointer(handoff.pointer_id)
            except PublishFailed as error:
                broker_down_until = time.monotonic() + 1.0
                log.info("hand-off of %s/%s left to the relay: %s", handoff.collection, handoff.document_id, error)
            except PyMongoError:
                log.exception("hand-off of %s/%s left to the relay", handoff.collection, handoff.document_id)


class PendingWrite:
    """One write's events, as the fields to store with it. Built by :meth:`Outbox.write`."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = list(events)
        self.items = [stored(event) for event in self.events]
        """The events as stored: encoded once, so the dispatcher pulls exactly what was written."""

    @property
    def insert_fields(self) -> dict[str, Any]:
        """Fields to add to a document being inserted."""
        return {OUTBOX_FIELD: list(self.items)}

    @property
    def update_operators(self) -> dict[str, Any]:
        """Update operators to add to an update (or a soft delete) of an existing document."""
        return {"$push": {OUTBOX_FIELD: {"$each": list(self.items)}}}

    @property
    def tombstone_operators(self) -> dict[str, Any]:
        """Update operators that turn a document into a tombstone carrying the events."""
        return {**self.update_operators, "$set": {TOMBSTONE_FIELD: True}}


class Outbox:
    """A service's outbox: ``with outbox.write(collection, id, events) as pending: <the write>``.

    On entering, the pointer is recorded; the body must make exactly one single-document write
    that includes ``pending.insert_fields`` or ``pending.update_operators``, and raise if that
    write did not happen (e.g. a version mismatch). On a normal exit the events are handed to
    the dispatcher; on an exception the pointer is removed (best effort) and the exception
    propagates. An update that depends on what was read must be conditional (on the document's
    ``version``, say), so that a concurrent change makes it match nothing instead of undoing it.

    Args:
        store: the service's outbox store.
        dispatcher: publishes right after the write; None leaves everything to the relay.
        handoff_seconds: how long the relay leaves a new write to the dispatcher.
    """

    def __init__(self, store: OutboxStore, dispatcher: Dispatcher | None = None, *, handoff_seconds: float = 5.0):
        self.store = store
        self.dispatcher = dispatcher
        self.handoff_seconds = handoff_seconds

    def write(self, collection: str, document_id: Any, events: Sequence[Event]) -> _WriteContext:
        return _WriteContext(self, collection, document_id, PendingWrite(events))


class _WriteContext:
    def __init__(self, outbox: Outbox, collection: str, document_id: Any, pending: PendingWrite) -> None:
        self.outbox = outbox
        self.collection = collection
        self.document_id = document_id
        self.pending = pending
        self.pointer_id: ObjectId | None = None

    def __enter__(self) -> PendingWrite:
        self.pointer_id = self.outbox.store.add_pointer(self.collection, self.document_id, self.outbox.handoff_seconds)
        return self.pending

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        assert self.pointer_id is not None
        if error_type is not None:
            try:
                self.outbox.store.remove_pointer(self.pointer_id)
            except PyMongoError:
                log.warning("could not remove the pointer of an abandoned write; the relay will discard it")
            return
        if self.outbox.dispatcher is not None:
            self.outbox.dispatcher.handoff(self.pointer_id, self.collection, self.document_id, self.pending.items)


class OutboxCollector(Collector):
    """Prometheus gauges read at scrape time: ``outbox_pending`` and ``outbox_oldest_pending_age_seconds``."""

    def __init__(self, store: OutboxStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            count, oldest = self.store.depth()
        except PyMongoError:
            return
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily("outbox_pending", "Writes whose events are not yet all published.", value=count)
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds", "Age of the oldest write with unpublished events (relay lag).", value=age
        )
