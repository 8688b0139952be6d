"""The outbox relay: publishes the events the dispatcher did not (DESIGN §5).

It follows the outbox pointers (see :mod:`.outbox`): leases the most overdue one, publishes that
document's pending events with confirms, pulls them, and clears the pointer. A failed publish
(broker down, unroutable) keeps the events pending and retries with exponential back-off. Leases
make several replicas safe: each pointer is worked by one relay at a time, and a relay that dies
mid-way only leaves events that are published again later (consumers skip duplicates).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter
from pymongo.errors import PyMongoError

from .outbox import OutboxStore, Pointer, publish_pending
from .publisher import PublishFailed, Publisher, backoff_seconds

log = logging.getLogger(__name__)

RELAYED = Counter("outbox_relayed_events_total", "Events the relay published (missed by the hand-off).")


class Relay:
    """Publishes pending outbox events of one service.

    Args:
        store: the service's outbox store.
        publisher: this relay's own publisher (its own connection).
        poll_seconds: idle wait between looks for due pointers.
        batch: due pointers read per look (one query), then claimed one by one by id.
        lease_seconds: how long a claimed pointer is reserved for this relay.
        write_grace_seconds: a pointer whose document shows no pending events is only discarded
            once it is this old, so a write still in flight is never lost track of.
        clock: the current time (UTC); tests move it.
    """

    def __init__(
        self,
        store: OutboxStore,
        publisher: Publisher,
        *,
        poll_seconds: float = 0.5,
        batch: int = 100,
        lease_seconds: float = 30.0,
        write_grace_seconds: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.write_grace = timedelta(seconds=write_grace_seconds)
        self.clock = clock

    def run_once(self) -> int:
        """Work the pointers due now (up to ``batch``). Returns how many; 0 means idle."""
        now = self.clock()
        worked = 0
        for pointer_id in self.store.due(now, self.batch):
            pointer = self.store.claim(pointer_id, now, self.lease_seconds)
            if pointer is not None:
                self._work(pointer, now)
                worked += 1
        return worked

    def _work(self, pointer: Pointer, now: datetime) -> None:
        try:
            published = publish_pending(self.store, self.publisher, pointer.collection, pointer.document_id)
        except PublishFailed as error:
            retry_at = now + timedelta(seconds=backoff_seconds(pointer.attempts + 1))
            log.warning("relay: %s/%s not published (%s); retry at %s", pointer.collection, pointer.document_id, error, retry_at)
            self.store.reschedule(pointer, retry_at, failed=True)
            return
        RELAYED.inc(published)
        self._clear(pointer, now, published)

    def _clear(self, pointer: Pointer, now: datetime, published: int) -> None:
        if published or now - pointer.created_at >= self.write_grace:
            self.store.remove_pointer(pointer.id)
        else:
            # Nothing pending yet: the write may still be in flight. Look again when it cannot be.
            self.store.reschedule(pointer, pointer.created_at + self.write_grace, failed=False)

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set; database and broker outages are waited out."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except PyMongoError as error:
                log.warning("relay: database unavailable (%s)", error)
                busy = False
            if not busy:
                self.publisher.keepalive()
                stop.wait(self.poll_seconds)
        self.publisher.close()
