"""The outbox relay: publishes the events the dispatcher did not (DESIGN §5).

It looks for documents marked pending (see :mod:`.outbox`) in each collection of the service
that carries events, one equality query each, takes those due (most overdue first), reserves
each with a lease, publishes its pending events with confirms and pulls them. A failed publish
(broker down, unroutable) keeps the events pending and retries with exponential back-off.
Leases make several replicas safe: each document is worked by one relay at a time, and a relay
that dies mid-way only leaves events that are published again later (consumers skip duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter
from pymongo.errors import PyMongoError

from .outbox import EPOCH, OutboxStore, Pending, publish_pending
from .publisher import Publisher, PublishFailed, backoff_seconds

log = logging.getLogger(__name__)

RELAYED = Counter("outbox_relayed_events_total", "Events the relay published (missed by the hand-off).")
LEGACY_GRACE = timedelta(seconds=60)
"""How long a pointer of an earlier version may precede its write (that version's write grace)."""
IDLE_SHARE = 0.1
"""At most this share of the time goes to looking for due documents when none is due: after a
look that took ``t`` seconds, the relay waits at least ``t / IDLE_SHARE - t`` (FerretDB reads
every marked document to find the due ones, which a broker outage's backlog makes slow)."""


class Relay:
    """Publishes pending outbox events of one service.

    Args:
        store: the service's outbox store (it names the collections to look in).
        publisher: this relay's own publisher (its own connection).
        poll_seconds: idle wait between looks for due documents.
        batch: due documents worked per look, at most.
        lease_seconds: how long a claimed document is reserved for this relay.
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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._orphans_adopted = False

    def run_once(self) -> int:
        """Work the documents due now (up to ``batch``). Returns how many; 0 means idle."""
        now = self.clock()
        self.store.adopt_legacy_pointers(now, LEGACY_GRACE)
        if not self._orphans_adopted:  # once per relay: what an earlier version left unmarked
            self.store.adopt_orphans(now)
            self._orphans_adopted = True
        due = [pending for collection in self.store.collections for pending in self.store.pending(collection)
               if (pending.due or EPOCH) <= now]
        due.sort(key=lambda pending: pending.due or EPOCH)
        worked = 0
        for pending in due[: self.batch]:
            if self.store.claim(pending, now + timedelta(seconds=self.lease_seconds)):
                self._work(pending, now)
                worked += 1
        return worked

    def _work(self, pending: Pending, now: datetime) -> None:
        """Publish one document's events; a failure of this document alone (the broker refused,
        or an event stored there cannot be read) reschedules it with back-off, never holding
        back the documents after it. A database error ends the round."""
        retry_at = now + timedelta(seconds=backoff_seconds(pending.attempts + 1))
        try:
            published = publish_pending(self.store, self.publisher, pending.collection, pending.document_id)
        except PublishFailed as error:
            log.warning("relay: %s/%s not published (%s); retry at %s",
                        pending.collection, pending.document_id, error, retry_at)
            self.store.reschedule(pending, retry_at)
            return
        except PyMongoError:
            raise
        except Exception:
            log.exception("relay: %s/%s not published; retry at %s", pending.collection, pending.document_id, retry_at)
            self.store.reschedule(pending, retry_at)
            return
        RELAYED.inc(published)

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set; database and broker outages are waited out, and any other
        error of a round is logged and the round tried again after a pause (the events stay
        stored, so the relay, which keeps the whole system's events moving, never stops for one).
        Idle looks are spaced so that they take at most :data:`IDLE_SHARE` of the time."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                busy = self.run_once()
            except PyMongoError as error:
                log.warning("relay: database unavailable (%s)", error)
                busy = False
            except Exception:
                log.exception("relay: a round failed; its events stay stored and are tried again")
                busy = False
            if not busy:
                self.publisher.keepalive()
                looked = time.monotonic() - started
                stop.wait(max(self.poll_seconds, looked / IDLE_SHARE - looked))
        self.publisher.close()
