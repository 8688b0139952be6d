"""The live feed, ``GET /api/v1/notifications/stream``: Server-Sent Events (WHATWG HTML §9.2) of the
caller's feed (:class:`~.store.FeedStore`), which notify's worker writes as the events arrive from
RabbitMQ: each new notification (``event: notification``, data an inbox item) and each change of
one of the caller's tasks (``event: task``, data ``{type, task}`` with the ``task.*`` snapshot).

Each event's ``id`` is ``<seq>-<entry id>``. A client that reconnects with ``Last-Event-ID`` gets
every entry written from :data:`REPLAY_MARGIN_MS` before that ``seq`` on: entries are written by
several workers whose clocks and commits are not in one order, so the margin resends a few it may
already have (it drops the ids it has seen) and loses none written within it of each other.

A stream holds no thread: notify runs gevent workers (one greenlet per connection), and the
stream waits between reads of the feed with a cooperative sleep. It re-checks the caller's
account on every read, and ends when that account is deactivated or its tokens revoked, when the
token it was opened with expires, when its worker is asked to stop (a restart: it would otherwise
hold the worker until gunicorn's graceful timeout), and after :data:`STREAM_SECONDS` in any case: the client
reconnects with its current token, and a refused one signs it out. A database error
ends it too (the client reconnects with ``Last-Event-ID``).

Each open stream holds one of its user's :class:`~.store.StreamSlots` (``STREAMS_PER_USER``): one
more is refused with 429 and ``Retry-After``, so no user can hold the gateway's connections. The
slot is renewed while the stream runs and freed when it ends (a stream learns that its client
left at its next write, a heartbeat at the latest); a killed process's slots free themselves
after :data:`SLOT_LEASE_SECONDS`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

from pymongo.errors import PyMongoError
from taskflow_common.problems import Forbidden, TooManyRequests, Unauthorized
from taskflow_common.serving import stopping
from taskflow_common.tokens import AccessPolicy, Principal

from .store import FeedStore, Slot, StreamSlots

POLL_SECONDS = 0.5
"""How often a stream reads its feed: an entry reaches the page within this of being written."""
HEARTBEAT_SECONDS = 5.0
"""The longest silence: a comment line then keeps proxies (the gateway's 30 s read timeout) from
closing it, and a write is how a stream learns its client left (so its slot is freed within this)."""
STREAM_SECONDS = 300.0
"""How long one stream lasts; the client reconnects with ``Last-Event-ID`` and its current token."""
SLOT_LEASE_SECONDS = 60.0
"""How long a stream's slot outlives a process that died holding it; renewed every third of it."""
REPLAY_MARGIN_MS = 5_000
"""How far before the last event seen a reconnection starts reading again (see the module)."""
_LAST_EVENT_ID = re.compile(r"^(\d{1,15})-")


def _event(entry: dict[str, Any]) -> str:
    """One entry as an SSE event (``data`` is one line of JSON)."""
    data = json.dumps(entry["data"], separators=(",", ":"), default=str)
    return f"id: {entry['seq']}-{entry['_id']}\nevent: {entry['kind']}\ndata: {data}\n\n"


class LiveFeed:
    """Streams of each user's feed.

    Args:
        feed: the feed store.
        slots: the streams open per user, each stream holding one.
        policy: the access policy of every request (deactivated accounts, revoked generations),
            re-applied on every read of the feed.
        poll_seconds, heartbeat_seconds, stream_seconds: see the module's constants (tests shorten them).
    """

    def __init__(
        self,
        feed: FeedStore,
        slots: StreamSlots,
        policy: AccessPolicy | None,
        *,
        poll_seconds: float = POLL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stream_seconds: float = STREAM_SECONDS,
    ) -> None:
        self.feed = feed
        self.slots = slots
        self.policy = policy
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stream_seconds = stream_seconds

    @staticmethod
    def start_seq(last_event_id: str | None, now_ms: int) -> int:
        """The ``seq`` from which a stream reads: :data:`REPLAY_MARGIN_MS` before the last event seen,
        or before now for a new stream (so nothing written while the page loaded is missed). An
        unreadable ``Last-Event-ID`` counts as none."""
        match = _LAST_EVENT_ID.match(last_event_id or "")
        return (int(match.group(1)) if match else now_ms) - REPLAY_MARGIN_MS

    def _admitted(self, principal: Principal) -> bool:
        if self.policy is None:
            return True
        try:
            self.policy.admit(principal)
            return True
        except (Unauthorized, Forbidden):
            return False

    def open(self, principal: Principal, last_event_id: str | None) -> Iterator[str]:
        """The SSE text of ``principal``'s feed from ``last_event_id`` on, until the stream's time is up
        or the account no longer admits the token.

        Raises:
            TooManyRequests: the user has ``STREAMS_PER_USER`` streams open already.
            PyMongoError: the database is away.
        """
        slot = self.slots.acquire(principal.user_id)
        if slot is None:
            raise TooManyRequests(
                f"You have {self.slots.limit} live streams open already: close one (a tab) first.",
                retry_after=math.ceil(self.heartbeat_seconds) + 1,  # a stream its client left ends by then
            )
        return self._stream(principal, last_event_id, slot)

    def _stream(self, principal: Principal, last_event_id: str | None, slot: Slot) -> Iterator[str]:
        try:
            yield from self._events(principal, last_event_id, slot)
        finally:
            try:
                self.slots.release(slot)
            except PyMongoError:
                pass  # the slot frees itself when its lease runs out

    def _events(self, principal: Principal, last_event_id: str | None, slot: Slot) -> Iterator[str]:
        started = time.monotonic()
        renewed = started
        cursor = self.start_seq(last_event_id, int(time.time() * 1000))
        sent: dict[str, int] = {}  # entry id → seq, for the entries at or after the cursor
        yield f": TaskFlow live feed of user {principal.user_id}\nretry: 1000\n\n"
        last_output = time.monotonic()
        while (time.monotonic() - started < self.stream_seconds and time.time() < principal.expires_at
               and not stopping()):
            try:
                if not self._admitted(principal):
                    return
                if time.monotonic() - renewed >= self.slots.lease.total_seconds() / 3:
                    if not self.slots.renew(slot):
                        return
                    renewed = time.monotonic()
                entries = self.feed.since(principal.user_id, cursor, limit=len(sent) + 100)
            except PyMongoError:
                return  # the database is away: the client reconnects, and resumes from its last event
            for entry in entries:
                if entry["_id"] in sent:
                    continue
                sent[entry["_id"]] = entry["seq"]
                last_output = time.monotonic()
                yield _event(entry)
            if sent:
                cursor = max(cursor, max(sent.values()) - REPLAY_MARGIN_MS)
                sent = {entry_id: seq for entry_id, seq in sent.items() if seq >= cursor}
            if time.monotonic() - last_output >= self.heartbeat_seconds:
                last_output = time.monotonic()
                yield ": heartbeat\n\n"
            time.sleep(self.poll_seconds)
