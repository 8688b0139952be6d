"""GET /tasks/stats: exactly what GET /tasks shows, at any moment and after any crash between
the counters' intent, the task write and the counters' update (issue 5 §6)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from taskflow_tasks import counts
from taskflow_tasks.tasks import Tasks

from .conftest import TASKS, User


class Clock:
    """A settable clock for the domain (UTC, milliseconds)."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        moment = self.moment + timedelta(**delta)
        self.moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@pytest.fixture
def clock(domain: Tasks) -> Clock:
    clock = Clock(datetime(2031, 3, 10, 14, 30, tzinfo=UTC))
    domain.clock = clock
    return clock


def parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def everything(client: FlaskClient, user: User, **params: str) -> dict[str, Any]:
    items, page = [], 1
    while True:
        body = client.get(TASKS, query_string={"page": page, "limit": 100, **params}, headers=user.headers).json
        items += body["items"]
        if len(items) >= body["total"] or not body["items"]:
            return {"items": items, "total": body["total"]}
        page += 1


def stats_from_list(client: FlaskClient, user: User, now: datetime) -> dict[str, Any]:
    """The statistics as a client would compute them from GET /tasks."""
    tasks = everything(client, user)["items"]
    by_status, by_priority = Counter(task["status"] for task in tasks), Counter(task["priority"] for task in tasks)
    return {
        "total": len(tasks),
        "by_status": {status: by_status[status] for status in ("todo", "in_progress", "done")},
        "by_priority": {priority: by_priority[priority] for priority in ("low", "medium", "high", "urgent")},
        "overdue": sum(
            1 for task in tasks if task["status"] != "done" and task["due_date"] and parse(task["due_date"]) < now
        ),
        "completed_last_7_days": sum(
            1 for task in tasks if task["completed_at"] and parse(task["completed_at"]) >= now - timedelta(days=7)
        ),
    }


def assert_consistent(client: FlaskClient, user: User, now: datetime) -> dict[str, Any]:
    stats = client.get(f"{TASKS}/stats", headers=user.headers).json
    assert stats == stats_from_list(client, user, now)
    assert client.get(TASKS, query_string={"overdue": "true"}, headers=user.headers).json["total"] == stats["overdue"]
    for status, count in stats["by_status"].items():
        assert client.get(TASKS, query_string={"status": status}, headers=user.headers).json["total"] == count
    return stats


@pytest.mark.parametrize("method", ["PATCH", "DELETE", "POST"])
def test_stats_is_not_a_task_id(client: FlaskClient, alice: User, method: str) -> None:
    """``/tasks/stats`` answers GET only: other methods are 405 and ``Allow`` says so (RFC 9110 §15.5.6)."""
    response = client.open(f"{TASKS}/stats", method=method, json={"title": "t"}, headers=alice.headers)
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert set(client.options(f"{TASKS}/stats").headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_stats_of_a_user_without_tasks_are_zero(client: FlaskClient, alice: User) -> None:
    assert client.get(f"{TASKS}/stats", headers=alice.headers).json == {
        "total": 0,
        "by_status": {"todo": 0, "in_progress": 0, "done": 0},
        "by_priority": {"low": 0, "medium": 0, "high": 0, "urgent": 0},
        "overdue": 0,
        "completed_last_7_days": 0,
    }


def test_randomized_writes_keep_stats_equal_to_the_list(
    client: FlaskClient, alice: User, bob: User, clock: Clock
) -> None:
    """Many creates, changes, completions, reopenings, re-datings and deletions, with time passing
    (so due dates pass, and completions enter and leave the 7-day window across day boundaries)."""
    rng = random.Random(20311)
    live: list[str] = []

    def due() -> str | None:
        if rng.random() < 0.2:
            return None
        return (clock() + timedelta(hours=rng.uniform(-96, 96))).isoformat()

    def create(owner: User) -> None:
        body = {
            "title": f"t{rng.randrange(10**6)}",
            "status": rng.choice(["todo", "in_progress", "done"]),
            "priority": rng.choice(["low", "medium", "high", "urgent"]),
            "due_date": due(),
        }
        response = client.post(TASKS, json=body, headers=owner.headers)
        assert response.status_code == 201
        if owner is alice:
            live.append(response.json["id"])

    for _ in range(25):
        create(alice)
    create(bob)
    for step in range(220):
        clock.advance(minutes=rng.uniform(0, 150))
        roll = rng.random()
        if roll < 0.2 or not live:
            create(alice)
        elif roll < 0.32:
            task_id = live.pop(rng.randrange(len(live)))
            assert client.delete(f"{TASKS}/{task_id}", headers=alice.headers).status_code == 204
        else:
            change = rng.choice(
                [
                    {"status": "done"},
                    {"status": "done"},
                    {"status": "todo"},
                    {"status": "in_progress"},
                    {"due_date": due()},
                    {"priority": rng.choice(["low", "urgent"])},
                    {"title": f"r{step}"},
                    {"status": rng.choice(["todo", "done"]), "due_date": due()},
                ]
            )
            response = client.patch(f"{TASKS}/{rng.choice(live)}", json=change, headers=alice.headers)
            assert response.status_code == 200
        if step % 20 == 0:
            assert_consistent(client, alice, clock())
    for minutes in (0, 1, 59, 600, 60 * 24, 60 * 24 * 3, 60 * 24 * 8):
        clock.advance(minutes=minutes)
        stats = assert_consistent(client, alice, clock())
    assert stats["total"] == len(live)
    assert client.get(f"{TASKS}/stats", headers=bob.headers).json["total"] == 1


def test_overdue_counts_tasks_due_today_only_once_their_moment_passed(
    client: FlaskClient, alice: User, create_task, clock: Clock
) -> None:
    today = clock().replace(hour=0, minute=0, second=0, microsecond=0)
    for moment in (
        today + timedelta(minutes=1),
        clock() - timedelta(milliseconds=1),
        clock(),
        clock() + timedelta(milliseconds=1),
        today + timedelta(hours=23, minutes=59),
        today - timedelta(days=1),
        today - timedelta(days=400),
        today + timedelta(days=1),
    ):
        create_task(due_date=moment.isoformat())
    create_task(due_date=(today - timedelta(days=2)).isoformat(), status="done")
    assert assert_consistent(client, alice, clock())["overdue"] == 4
    clock.advance(milliseconds=1)
    assert assert_consistent(client, alice, clock())["overdue"] == 5
    clock.advance(hours=12)  # past midnight: yesterday's tasks now count from the counters
    assert assert_consistent(client, alice, clock())["overdue"] == 8


def test_completions_leave_the_window_after_exactly_seven_days(
    client: FlaskClient, alice: User, create_task, clock: Clock
) -> None:
    first = create_task(status="done")
    clock.advance(hours=5)
    create_task(status="done")
    clock.advance(days=7, hours=-5)
    assert assert_consistent(client, alice, clock())["completed_last_7_days"] == 2
    clock.advance(milliseconds=1)
    assert assert_consistent(client, alice, clock())["completed_last_7_days"] == 1
    clock.advance(days=30)
    assert assert_consistent(client, alice, clock())["completed_last_7_days"] == 0
    # reopening a task completed long ago touches a day the counters have forgotten
    client.patch(f"{TASKS}/{first['id']}", json={"status": "todo"}, headers=alice.headers)
    assert assert_consistent(client, alice, clock())["by_status"]["done"] == 1


class ProcessDied(BaseException):
    """Stands for the process stopping at this point (kill -9): no handler of the service runs."""


def _fail_once(
    monkeypatch: pytest.MonkeyPatch, target: object, name: str, error: type[BaseException], *, after: bool = False
) -> None:
    """Make ``target.name`` raise ``error`` once: instead of running, or ``after`` it ran."""
    original = getattr(target, name)
    state = {"failed": False}

    def fail(*args: Any, **kwargs: Any) -> Any:
        if state["failed"]:
            return original(*args, **kwargs)
        state["failed"] = True
        if after:
            original(*args, **kwargs)
        raise error("stopped here")

    monkeypatch.setattr(target, name, fail)


WRITES = {"create": "insert", "update": "update", "delete": "tombstone"}


def _request(client: FlaskClient, alice: User, operation: str, target: dict[str, Any]):  # noqa: ANN202
    return {
        "create": lambda: client.post(TASKS, json={"title": "new", "status": "done"}, headers=alice.headers),
        "update": lambda: client.patch(f"{TASKS}/{target['id']}", json={"status": "done"}, headers=alice.headers),
        "delete": lambda: client.delete(f"{TASKS}/{target['id']}", headers=alice.headers),
    }[operation]()


@pytest.mark.parametrize("operation", ["create", "update", "delete"])
@pytest.mark.parametrize("died", ["before the task write", "after the task write"])
def test_a_process_dying_mid_change_is_settled_once_its_claim_expires(
    client: FlaskClient,
    alice: User,
    create_task,
    domain: Tasks,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    died: str,
) -> None:
    """Dead before the task write: the intent is dropped; after it: applied. Until the claim's
    lease passes, the owner's other counter changes wait (503 after a while), reads go on."""
    target = create_task(due_date="2020-01-01T00:00:00Z")
    create_task(status="done")
    before = assert_consistent(client, alice, clock())
    if died == "before the task write":
        _fail_once(monkeypatch, domain.tasks, WRITES[operation], ProcessDied)
    else:
        _fail_once(monkeypatch, domain.counts, "finish", ProcessDied)
    with pytest.raises(ProcessDied):
        _request(client, alice, operation, target)
    assert domain.counts.get(alice.id)["pending"] is not None
    assert client.get(f"{TASKS}/stats", headers=alice.headers).json == before  # the committed counters
    domain.counts.wait_seconds = 0.2
    busy = client.post(TASKS, json={"title": "waits"}, headers=alice.headers)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    clock.advance(seconds=domain.counts.lease.total_seconds())
    after = assert_consistent(client, alice, clock())
    assert domain.counts.get(alice.id)["pending"] is None
    assert (after == before) == (died == "before the task write")
    create_task(status="in_progress")  # writes go on from the settled counters
    assert_consistent(client, alice, clock())


@pytest.mark.parametrize("operation", ["create", "update", "delete"])
@pytest.mark.parametrize("failed", ["before the task write", "after the task write"])
def test_a_write_that_fails_settles_its_own_intent_at_once(
    client: FlaskClient,
    alice: User,
    create_task,
    domain: Tasks,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    failed: str,
) -> None:
    """An error from the database (the write may or may not have happened: a lost reply) is
    a 500, and the task decides what the counters count; the owner's next write need not wait."""
    client.application.testing = False  # answer the error with a 500, as production does
    target = create_task(due_date="2020-01-01T00:00:00Z")
    before = assert_consistent(client, alice, now())
    _fail_once(monkeypatch, domain.tasks, WRITES[operation], RuntimeError, after=failed == "after the task write")
    assert _request(client, alice, operation, target).status_code == 500
    assert domain.counts.get(alice.id)["pending"] is None
    after = assert_consistent(client, alice, now())
    assert (after == before) == (failed == "before the task write")
    create_task(status="in_progress")
    assert_consistent(client, alice, now())


def now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def test_a_write_settles_a_leftover_intent_before_its_own(
    client: FlaskClient, alice: User, create_task, domain: Tasks, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_once(monkeypatch, domain.counts, "finish", ProcessDied)
    with pytest.raises(ProcessDied):
        client.post(TASKS, json={"title": "dying"}, headers=alice.headers)
    clock.advance(seconds=domain.counts.lease.total_seconds())
    create_task(title="next")
    counters = domain.counts.get(alice.id)
    assert counters["pending"] is None and counters["total"] == 2 and counters["next_seq"] == 2


def test_a_write_queued_behind_a_dead_claim_waits_out_its_lease_and_goes_through(
    client: FlaskClient, alice: User, domain: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process SIGKILLed mid-POST leaves its claim; the owner's next POST, arriving at once,
    waits while the lease runs (on the clock as it advances while waiting) and then settles it,
    instead of answering 503 until a later request comes in after the lease."""
    domain.counts.lease = timedelta(seconds=0.3)
    _fail_once(monkeypatch, domain.counts, "finish", ProcessDied)
    with pytest.raises(ProcessDied):
        client.post(TASKS, json={"title": "dying"}, headers=alice.headers)
    assert domain.counts.lease < timedelta(seconds=domain.counts.wait_seconds)
    assert client.post(TASKS, json={"title": "queued"}, headers=alice.headers).status_code == 201
    counters = domain.counts.get(alice.id)
    assert counters["pending"] is None and counters["total"] == 2 and counters["next_seq"] == 2


def test_a_title_change_taking_the_version_of_a_dead_status_change_is_not_counted_as_it(
    client: FlaskClient, alice: User, create_task, domain: Tasks, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status change dies before its write; a title change (which claims no counters) then
    takes the version the status change was for. Settling must not count the status change."""
    task = create_task()
    _fail_once(monkeypatch, domain.tasks, "update", ProcessDied)
    with pytest.raises(ProcessDied):
        client.patch(f"{TASKS}/{task['id']}", json={"status": "done"}, headers=alice.headers)
    renamed = client.patch(f"{TASKS}/{task['id']}", json={"title": "renamed"}, headers=alice.headers)
    assert renamed.status_code == 200 and renamed.json["version"] == 2
    clock.advance(seconds=domain.counts.lease.total_seconds())
    assert assert_consistent(client, alice, clock())["by_status"]["todo"] == 1


def test_a_request_stalled_past_its_claim_is_fenced_off_and_retried(
    client: FlaskClient, alice: User, create_task, domain: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live request whose task write lands after its claim's lease passed (queued behind the
    engine, say) and after another request settled the claim: the late write must not land
    uncounted. It is fenced off, and the request retries as a new change."""
    domain.counts.lease = timedelta(seconds=0.5)
    task = create_task()
    update, stall = domain.tasks.update, threading.Event()

    def stalled_update(*args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "stalled" and not stall.is_set():
            stall.set()
            time.sleep(1.0)
        update(*args, **kwargs)

    monkeypatch.setattr(domain.tasks, "update", stalled_update)
    done: list[int] = []
    slow = threading.Thread(name="stalled", target=lambda: done.append(
        client.application.test_client().patch(f"{TASKS}/{task['id']}", json={"status": "done"},
                                               headers=alice.headers).status_code))
    slow.start()
    stall.wait(5)
    time.sleep(0.6)  # the stalled claim's lease has passed
    create_task(title="settles the stalled claim")
    slow.join(10)
    assert done == [200]
    stats = assert_consistent(client, alice, now())
    assert stats["by_status"]["done"] == 1 and stats["total"] == 2


@pytest.mark.parametrize("second", ["fails", "dies"])
def test_a_second_delete_of_a_task_already_deleted_and_purged_is_not_counted_twice(
    client: FlaskClient, alice: User, create_task, domain: Tasks, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    """A double click on delete: the second request read the task, the first deleted it and its
    tombstone was purged, then the second's write fails (or its process dies). Whose deletion the
    missing task was cannot be told, so the owner's counters are recounted, not guessed."""
    domain.counts.lease = timedelta(seconds=0.3)
    target, other = create_task(), create_task()
    read, go_on = threading.Event(), threading.Event()
    current, tombstone = domain._current, domain.tasks.tombstone

    def reading(*args: Any) -> dict[str, Any]:
        found = current(*args)
        if threading.current_thread().name == "second":
            read.set()
            go_on.wait(10)
        return found

    def failing(*args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "second":
            raise (ProcessDied if second == "dies" else RuntimeError)("before the tombstone write")
        tombstone(*args, **kwargs)

    monkeypatch.setattr(domain, "_current", reading)
    monkeypatch.setattr(domain.tasks, "tombstone", failing)
    client.application.testing = False

    def delete_again() -> None:
        try:
            client.application.test_client().delete(f"{TASKS}/{target['id']}", headers=alice.headers)
        except ProcessDied:
            pass

    second_delete = threading.Thread(name="second", target=delete_again)
    second_delete.start()
    read.wait(10)
    assert client.delete(f"{TASKS}/{target['id']}", headers=alice.headers).status_code == 204
    domain.tasks._tasks.delete_one({"_id": ObjectId(target["id"])})  # its task.deleted went out: purged
    go_on.set()
    second_delete.join(10)
    time.sleep(0.4)  # a dead request's claim: its lease passes
    stats = assert_consistent(client, alice, now())
    assert stats["total"] == 1 and domain.counts.get(alice.id)["pending"] is None
    assert client.get(f"{TASKS}/{other['id']}", headers=alice.headers).status_code == 200


def test_counters_found_wrong_are_recounted_from_the_tasks(
    client: FlaskClient, alice: User, create_task, domain: Tasks
) -> None:
    """Should a counter ever be off (it would go negative), the owner's counters are rebuilt from
    their tasks instead of the account being stuck with errors."""
    task = create_task(status="done")
    create_task()
    domain.counts._counts.update_one({"_id": alice.id}, {"$set": {"by_status.done": 0, "total": 7}})
    assert client.delete(f"{TASKS}/{task['id']}", headers=alice.headers).status_code == 204
    stats = assert_consistent(client, alice, now())
    assert stats["total"] == 1 and stats["by_status"]["todo"] == 1


def test_eight_concurrent_writers_of_one_owner_keep_the_counters_exact(
    app: Flask, client: FlaskClient, alice: User, create_task, domain: Tasks
) -> None:
    """Creates, status changes, re-dates and deletes from 8 threads at once: every request
    succeeds, each task has its own creation number, and the statistics equal the list."""
    shared = [create_task(due_date="2020-01-01T00:00:00Z") for _ in range(4)]
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def work(worker: int) -> None:
        writer = app.test_client()
        chance = random.Random(worker)
        barrier.wait()
        for step in range(12):
            target = f"{TASKS}/{chance.choice(shared)['id']}"
            if step % 4 == 0:
                response = writer.post(TASKS, json={"title": f"w{worker}-{step}", "status": chance.choice(["todo", "done"])},
                                       headers=alice.headers)
            elif step % 4 == 1:
                response = writer.patch(target, json={"status": chance.choice(["todo", "in_progress", "done"])},
                                        headers=alice.headers)
            elif step % 4 == 2:
                response = writer.patch(target, json={"title": f"t{worker}-{step}", "priority": chance.choice(["low", "high"])},
                                        headers=alice.headers)
            else:
                created = writer.post(TASKS, json={"title": "short-lived"}, headers=alice.headers).json
                response = writer.delete(f"{TASKS}/{created['id']}", headers=alice.headers)
            statuses.append(response.status_code)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert Counter(statuses) == Counter({200: 48, 201: 24, 204: 24})
    stats = assert_consistent(client, alice, now())
    assert stats["total"] == 4 + 24
    counters = domain.counts.get(alice.id)
    assert counters["pending"] is None and counters["next_seq"] == 4 + 24 + 24
    seqs = [task["seq"] for task in domain.tasks._tasks.find({"owner_id": alice.id}, {"seq": 1})]
    assert len(seqs) == len(set(seqs)) == 28


def test_counters_never_go_negative() -> None:
    with pytest.raises(ValueError):
        counts.apply(counts.empty(), {"by_status.todo": -1}, datetime.now(UTC))
