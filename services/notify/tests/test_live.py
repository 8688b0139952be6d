"""The live feed, ``GET /api/v1/notifications/stream`` (DESIGN §4 notify): own events only, in the
order written, none lost across a reconnection with ``Last-Event-ID``, ended for a deactivated account."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from taskflow_common.deactivation import DeactivatedUsers
from taskflow_common.tokens import Principal
from taskflow_notify import Notify
from taskflow_notify.live import LiveFeed
from taskflow_notify.messages import NewNotification
from taskflow_notify.store import StreamSlots

from tests.support.tokens import Issuer

from .conftest import new_id, task_event, user_event

STREAM = "/api/v1/notifications/stream"


def parse(text: str) -> list[dict[str, str]]:
    """The events of an SSE text (comments left out)."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            events.append(fields)
    return events


def slots(notify: Notify, *, limit: int = 10, lease_seconds: float = 60.0) -> StreamSlots:
    return StreamSlots(lambda: notify.mongo.db, limit=limit, lease_seconds=lease_seconds)


def live(notify: Notify, **options: float) -> LiveFeed:
    return LiveFeed(notify.feed, slots(notify), notify.deactivated, **{"poll_seconds": 0.05, "stream_seconds": 0.5, **options})


def remind(notify: Notify, user_id: str, title: str) -> None:
    notify.notifications.create(NewNotification(
        key=f"test:{uuid.uuid4()}", user_id=user_id, kind="reminder", title=title, body="soon", subject_id="t",
        actor_id=None, created_at=datetime.now(UTC),
    ))


def test_a_stream_carries_the_users_own_notifications_and_task_changes_in_order(notify: Notify) -> None:
    me, other = new_id(), new_id()
    remind(notify, me, "First")
    notify.handlers.handle_task_event(task_event("task.created", new_id(), me, due=None, title="Mine"))
    remind(notify, other, "Not mine")
    notify.handlers.handle_task_event(task_event("task.created", new_id(), other, due=None, title="Not mine either"))

    events = parse("".join(live(notify).open(Principal(me, "user", "jti"), None)))

    assert [event["event"] for event in events] == ["notification", "task"]
    assert json.loads(events[0]["data"])["title"] == "First"
    assert json.loads(events[1]["data"])["type"] == "task.created"
    assert json.loads(events[1]["data"])["task"]["title"] == "Mine"


def test_a_redelivered_event_adds_nothing_to_the_feed(notify: Notify) -> None:
    me = new_id()
    event = task_event("task.updated", new_id(), me, due=None)
    notify.handlers.handle_task_event(event)
    notify.handlers.handle_task_event(event)
    assert len(notify.feed.since(me, 0)) == 1


def test_reconnecting_with_last_event_id_loses_nothing_written_meanwhile(notify: Notify) -> None:
    me = new_id()
    principal = Principal(me, "user", "jti")
    for number in range(3):
        remind(notify, me, f"Before {number}")
    first = parse("".join(live(notify).open(principal, None)))
    last_seen = first[-1]["id"]
    for number in range(3):  # written while the client was away
        remind(notify, me, f"While away {number}")

    again = parse("".join(live(notify).open(principal, last_seen)))

    titles = [json.loads(event["data"])["title"] for event in again]
    assert titles[-3:] == ["While away 0", "While away 1", "While away 2"]
    assert {event["id"] for event in first} | {event["id"] for event in again} == {
        f"{entry['seq']}-{entry['_id']}" for entry in notify.feed.since(me, 0)
    }


def test_a_reconnection_reads_from_a_margin_before_the_last_event_seen() -> None:
    assert LiveFeed.start_seq("1796196589926-task:x", now_ms=0) == 1796196589926 - 5_000
    assert LiveFeed.start_seq("not an id", now_ms=1_000_000) == 1_000_000 - 5_000
    assert LiveFeed.start_seq(None, now_ms=1_000_000) == 1_000_000 - 5_000


def test_the_stream_of_a_deactivated_account_ends(notify: Notify) -> None:
    me = new_id()
    policy = DeactivatedUsers(lambda: notify.mongo.db, refresh_seconds=0)
    feed = LiveFeed(notify.feed, slots(notify), policy, poll_seconds=0.05, stream_seconds=30)
    stream = feed.open(Principal(me, "user", "jti"), None)
    next(stream)  # the opening comment
    policy.handle(user_event("user.deactivated", me, active=False, version=2, access_generation=1))

    started = datetime.now(UTC)
    rest = list(stream)  # ends by itself, long before its 30 s

    assert datetime.now(UTC) - started < timedelta(seconds=10)
    assert parse("".join(rest)) == []


def test_a_long_silence_is_broken_by_a_comment_only(notify: Notify) -> None:
    text = "".join(live(notify, heartbeat_seconds=0.1).open(Principal(new_id(), "user", "jti"), None))
    assert ": heartbeat" in text
    assert parse(text) == []


def test_the_stream_needs_a_bearer_token(client: FlaskClient) -> None:
    response = client.get(STREAM)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"


def test_the_stream_is_an_unbuffered_event_stream(client: FlaskClient, issuer: Issuer) -> None:
    response = client.get(STREAM, headers=issuer.headers(new_id()), buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert response.headers["Cache-Control"] == "no-store"
        assert next(response.response).startswith(b": TaskFlow live feed")
    finally:
        response.close()



def test_one_stream_past_the_users_limit_is_refused_until_one_closes(app: Flask, issuer: Issuer) -> None:
    me = new_id()
    client = app.test_client()
    limit = app.extensions["taskflow_notify.live"].slots.limit
    opened = [client.get(STREAM, headers=issuer.headers(me), buffered=False) for _ in range(limit)]
    try:
        assert [response.status_code for response in opened] == [200] * limit
        refused = client.get(STREAM, headers=issuer.headers(me))
        assert refused.status_code == 429
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
        assert f"{limit} live streams" in refused.get_json()["detail"]
        someone_else = client.get(STREAM, headers=issuer.headers(new_id()), buffered=False)
        assert someone_else.status_code == 200
        someone_else.close()

        opened.pop().close()  # the client goes away: its stream ends and frees its slot
        again = client.get(STREAM, headers=issuer.headers(me), buffered=False)
        assert again.status_code == 200
        opened.append(again)
    finally:
        for response in opened:
            response.close()


def test_concurrent_streams_never_hold_more_slots_than_the_limit(notify: Notify) -> None:
    me, store = new_id(), slots(notify, limit=3)
    start = threading.Barrier(16)
    taken: list[object] = []

    def take() -> None:
        start.wait()
        slot = store.acquire(me)
        if slot is not None:
            taken.append(slot)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(taken) == 3
    assert notify.mongo.db["streams"].count_documents({"user_id": me}) == 3


def test_the_slot_of_a_killed_stream_is_taken_over_once_its_lease_ran_out(notify: Notify) -> None:
    me, store = new_id(), slots(notify, limit=1, lease_seconds=0.2)
    killed = store.acquire(me)  # its process dies: nobody renews or releases it
    assert killed is not None
    assert store.acquire(me) is None

    threading.Event().wait(0.3)
    successor = store.acquire(me)

    assert successor is not None
    assert not store.renew(killed)  # had the old stream lived on, it would end here
    store.release(killed)  # and its late release frees nothing of the successor's
    assert store.renew(successor)


def test_a_stream_that_ends_frees_its_slot(notify: Notify) -> None:
    me = new_id()
    feed = LiveFeed(notify.feed, slots(notify, limit=1), notify.deactivated, poll_seconds=0.05, stream_seconds=0.2)
    "".join(feed.open(Principal(me, "user", "jti"), None))
    early = feed.open(Principal(me, "user", "jti"), None)
    next(early)
    early.close()  # the client disconnected mid-stream

    assert notify.mongo.db["streams"].count_documents({"user_id": me}) == 0


def test_a_stream_ends_when_its_token_expires(notify: Notify) -> None:
    feed = live(notify, stream_seconds=30)
    principal = Principal(new_id(), "user", "jti", expires_at=datetime.now(UTC).timestamp() + 0.5)

    started = datetime.now(UTC)
    "".join(feed.open(principal, None))  # ends by itself when the token does, long before its 30 s

    assert datetime.now(UTC) - started < timedelta(seconds=10)
