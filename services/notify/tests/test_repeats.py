"""An event applied once and sent again days later (a hand-off held up behind the relay's copy, or
a publisher sending it again) adds nothing, though notify's feed entries, which make its task
handler idempotent, last a day only: the consumer looks it up in ``processed_events`` (7 days),
marked as a hand-off or not (issue 19)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from taskflow_common.events.consumer import PROCESSED
from taskflow_common.events.publisher import Publisher
from taskflow_common.expiry import Sweeper
from taskflow_notify import Notify
from taskflow_notify.store import EXPIRIES

from .conftest import Bus, Workers, eventually, new_id, task_event

ONLY_REMINDERS = ("relay", "inbox", "user-status", "scheduler", "mailer", "housekeeping")


@pytest.mark.parametrize(
    ("marked", "dated"),
    [(False, timedelta(days=-2)), (True, timedelta(days=-2)), (True, timedelta(days=2))],
    ids=["relayed", "marked-as-hand-off", "marked-and-dated-ahead"],
)
def test_an_event_sent_again_after_its_feed_entry_expired_adds_nothing(
    notify: Notify, bus: Bus, workers: Workers, marked: bool, dated: timedelta
) -> None:
    """Dated two days ahead (a producer's clock, or a publisher's choice), a hand-off's mark is no
    more trusted than dated two days back."""
    workers.start(notify, without=ONLY_REMINDERS)
    db = notify.mongo.db
    owner = new_id()
    made = datetime.now(UTC) + dated
    event = dataclasses.replace(task_event("task.updated", new_id(), owner, due=None, title="once"), time=made)
    publisher = Publisher(bus.url, exchange=bus.exchange)
    try:
        publisher.publish(event)
        eventually(lambda: db[PROCESSED].count_documents({}) == 1, what="the event applied and recorded")
        assert len(notify.feed.since(owner, 0)) == 1
        # A day on, the feed entry is swept; the processed_events record (7 days) stays.
        Sweeper(lambda: notify.mongo.db, EXPIRIES, clock=lambda: datetime.now(UTC) + timedelta(days=2)).sweep()
        assert notify.feed.since(owner, 0) == []
        publisher.publish(event, first=marked)
        follower = task_event("task.updated", new_id(), new_id(), due=None, title="follower")
        publisher.publish(follower, first=True)
        eventually(lambda: db[PROCESSED].count_documents({}) == 2, what="the follower applied and recorded")
    finally:
        publisher.close()
    assert notify.feed.since(owner, 0) == []
