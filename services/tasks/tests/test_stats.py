"""GET /tasks/stats: exactly what GET /tasks shows, at any moment and after any crash between
the counters' intent, the task write and the counters' update (issue 5 §6)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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


def _crash_once(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
    original = getattr(target, name)
    state = {"crashed": False}

    def crash(*args: Any, **kwargs: Any) -> Any:
        if not state["crashed"]:
            state["crashed"] = True
            raise RuntimeError("process died here")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, crash)


@pytest.mark.parametrize("operation", ["create", "update", "delete"])
@pytest.mark.parametrize("crash", ["before the task write", "after the task write"])
def test_a_crash_between_intent_and_counters_is_settled_by_the_next_reader(
    client: FlaskClient,
    alice: User,
    create_task,
    domain: Tasks,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
    crash: str,
) -> None:
    """A crash before the task write drops the intent; one after it applies the intent."""
    client.application.testing = False  # answer the crash with a 500, as production does
    target = create_task(due_date="2020-01-01T00:00:00Z")
    create_task(status="done")
    before = assert_consistent(client, alice, now())
    if crash == "before the task write":
        _crash_once(
            monkeypatch, domain.tasks, {"create": "insert", "update": "update", "delete": "tombstone"}[operation]
        )
    else:
        _crash_once(monkeypatch, domain.counts, "finish")
    response = {
        "create": lambda: client.post(TASKS, json={"title": "new", "status": "done"}, headers=alice.headers),
        "update": lambda: client.patch(f"{TASKS}/{target['id']}", json={"status": "done"}, headers=alice.headers),
        "delete": lambda: client.delete(f"{TASKS}/{target['id']}", headers=alice.headers),
    }[operation]()
    assert response.status_code == 500
    assert domain.counts.get(alice.id)["pending"] is not None
    after = assert_consistent(client, alice, now())
    assert domain.counts.get(alice.id)["pending"] is None
    if crash == "before the task write":
        assert after == before
    else:
        assert after != before
    create_task(status="in_progress")  # writes go on from the settled counters
    assert_consistent(client, alice, now())


def now() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def test_a_write_settles_a_leftover_intent_before_its_own(
    client: FlaskClient, alice: User, create_task, domain: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.application.testing = False
    _crash_once(monkeypatch, domain.counts, "finish")
    client.post(TASKS, json={"title": "crashing"}, headers=alice.headers)
    create_task(title="next")
    counters = domain.counts.get(alice.id)
    assert counters["pending"] is None and counters["total"] == 2 and counters["next_seq"] == 2


def test_counters_never_go_negative() -> None:
    with pytest.raises(ValueError):
        counts.apply(counts.empty(), {"by_status.todo": -1}, datetime.now(UTC))
