"""GET /tasks: filters, search, sorting, pagination and bad query strings (DESIGN §3, §4 tasks;
issue 5 §3)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient

from .conftest import TASKS, User


def listed(client: FlaskClient, user: User, **params: Any) -> dict[str, Any]:
    response = client.get(f"{TASKS}?{urlencode(params)}", headers=user.headers)
    assert response.status_code == 200, response.json
    return response.json


def titles(client: FlaskClient, user: User, **params: Any) -> list[str]:
    return [item["title"] for item in listed(client, user, limit=100, **params)["items"]]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_default_list_is_newest_first_with_the_page_envelope(client: FlaskClient, alice: User, create_task) -> None:
    for title in ("first", "second", "third"):
        create_task(title=title)
    body = listed(client, alice)
    assert (body["total"], body["page"], body["limit"]) == (3, 1, 20)
    assert [item["title"] for item in body["items"]] == ["third", "second", "first"]
    assert titles(client, alice, sort="created_at") == ["first", "second", "third"]


def test_filters_by_status_priority_and_tag(client: FlaskClient, alice: User, create_task) -> None:
    create_task(title="a", status="done", priority="low", tags=["Home"])
    create_task(title="b", status="in_progress", priority="urgent", tags=["work", "home"])
    create_task(title="c", priority="urgent", tags=["work"])
    assert titles(client, alice, status="done") == ["a"]
    assert titles(client, alice, priority="urgent", sort="title") == ["b", "c"]
    assert titles(client, alice, tag="HOME", sort="title") == ["a", "b"]
    assert titles(client, alice, tag="work", priority="urgent", status="todo") == ["c"]
    assert listed(client, alice, tag="nothing")["total"] == 0


def test_q_searches_title_and_description_case_insensitively_and_literally(
    client: FlaskClient, alice: User, create_task
) -> None:
    create_task(title="Fix (urgent) bug?", description="")
    create_task(title="Plain", description="costs $5.00 [approx] a+b")
    create_task(title="ÄPFEL kaufen", description="")
    create_task(title="Other", description="nothing to see")
    assert titles(client, alice, q="(URGENT)") == ["Fix (urgent) bug?"]
    assert titles(client, alice, q="bug?") == ["Fix (urgent) bug?"]
    assert titles(client, alice, q="$5.00 [APPROX] a+b") == ["Plain"]
    assert titles(client, alice, q="äpfel") == ["ÄPFEL kaufen"]
    for pattern in (".*", "^", "a|b", "\\", "[a-z]", "(?i)x", "$where"):
        assert titles(client, alice, q=pattern) == [], pattern
    assert len(titles(client, alice, q="T")) == 3


def test_due_ranges_and_overdue(client: FlaskClient, alice: User, create_task) -> None:
    now = datetime.now(UTC)
    create_task(title="long ago", due_date=iso(now - timedelta(days=3)))
    create_task(title="done late", due_date=iso(now - timedelta(days=2)), status="done")
    create_task(title="an hour ago", due_date=iso(now - timedelta(hours=1)), status="in_progress")
    create_task(title="tomorrow", due_date=iso(now + timedelta(days=1)))
    create_task(title="undated")
    assert titles(client, alice, overdue="true", sort="due_date") == ["long ago", "an hour ago"]
    assert titles(client, alice, overdue="false", sort="due_date") == ["done late", "tomorrow", "undated"]
    cut = iso(now - timedelta(days=1))
    assert titles(client, alice, due_before=cut, sort="due_date") == ["long ago", "done late"]
    assert titles(client, alice, due_after=cut, sort="due_date") == ["an hour ago", "tomorrow"]
    window = {"due_after": iso(now - timedelta(days=2, hours=1)), "due_before": iso(now)}
    assert titles(client, alice, sort="due_date", **window) == ["done late", "an hour ago"]
    offset = (now - timedelta(days=1)).astimezone(timezone(timedelta(hours=-5)))
    assert titles(client, alice, due_before=offset.isoformat(), sort="due_date") == ["long ago", "done late"]


def test_due_bounds_are_exclusive_to_the_millisecond(client: FlaskClient, alice: User, create_task) -> None:
    create_task(title="at ten", due_date="2030-01-01T10:00:00Z")
    assert titles(client, alice, due_before="2030-01-01T10:00:00Z") == []
    assert titles(client, alice, due_before="2030-01-01T10:00:00.000500Z") == ["at ten"]
    assert titles(client, alice, due_after="2030-01-01T10:00:00Z") == []
    assert titles(client, alice, due_after="2030-01-01T09:59:59.999Z") == ["at ten"]


def test_every_sort_in_both_directions_breaks_ties_in_creation_order(
    client: FlaskClient, alice: User, create_task
) -> None:
    create_task(title="beta", priority="high", due_date="2030-01-02T00:00:00Z")
    create_task(title="Alpha", priority="low")
    create_task(title="gamma", priority="urgent", due_date="2030-01-01T00:00:00Z")
    create_task(title="alpha", priority="high", due_date="2030-01-02T00:00:00Z")
    create_task(title="Delta", priority="medium")
    assert titles(client, alice, sort="title") == ["Alpha", "alpha", "beta", "Delta", "gamma"]
    assert titles(client, alice, sort="-title") == ["gamma", "Delta", "beta", "alpha", "Alpha"]
    assert titles(client, alice, sort="priority") == ["Alpha", "Delta", "beta", "alpha", "gamma"]
    assert titles(client, alice, sort="-priority") == ["gamma", "alpha", "beta", "Delta", "Alpha"]
    assert titles(client, alice, sort="due_date") == ["gamma", "beta", "alpha", "Alpha", "Delta"]
    assert titles(client, alice, sort="-due_date") == ["Delta", "Alpha", "alpha", "beta", "gamma"]
    client.patch(
        f"{TASKS}/{listed(client, alice, sort='title')['items'][3]['id']}",
        json={"description": "touched"},
        headers=alice.headers,
    )
    assert titles(client, alice, sort="-updated_at")[0] == "Delta"
    assert titles(client, alice, sort="updated_at")[-1] == "Delta"


def test_pages_cover_the_list_exactly_once(client: FlaskClient, alice: User, create_task) -> None:
    for i in range(7):
        create_task(title=f"t{i}", priority=random.choice(["low", "high"]))
    for sort in ("-created_at", "priority", "-title"):
        everything = titles(client, alice, sort=sort)
        paged = [
            item["title"]
            for page in (1, 2, 3)
            for item in listed(client, alice, sort=sort, page=page, limit=3)["items"]
        ]
        assert paged == everything
    beyond = listed(client, alice, page=5, limit=3)
    assert beyond["items"] == [] and beyond["total"] == 7 and beyond["page"] == 5


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=1000000",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "page=0",
        "page=-1",
        "page=abc",
        "page=10000000",
        "status=finished",
        "status[$ne]=done",
        "status=todo&status=done",
        "priority[$gt]=",
        "tag[$regex]=.*",
        "sort=colour",
        "sort=--title",
        "sort=_id",
        "sort=seq",
        "due_before=2030-01-01T00:00:00",
        "due_before=yesterday",
        "due_before=0.5",
        "due_after=1893456000",
        "due_before=2030-01-01 10:00:00Z",
        "due_after[$gt]=2020-01-01T00:00:00Z",
        "overdue=maybe",
        "q=",
        f"q={'x' * 201}",
        f"tag={'x' * 33}",
        "owner_id=someone",
        "unknown=1",
        "q=%00",
    ],
)
def test_bad_query_strings_are_422(client: FlaskClient, alice: User, create_task, query: str) -> None:
    create_task()
    response = client.get(f"{TASKS}?{query}", headers=alice.headers)
    assert response.status_code == 422, query
    assert response.mimetype == "application/problem+json" and response.json["errors"]


# -- totals -------------------------------------------------------------------------------------


def test_totals_from_the_counters_equal_the_counted_matches(client: FlaskClient, alice: User, create_task) -> None:
    """No filter, one status or one priority: the counters answer; other filters count. Both agree
    with the tasks listed, after deletions and changes of status and priority."""
    created = [create_task(title=f"task {i:02}", priority=("low", "high")[i % 2]) for i in range(12)]
    for task in created[:3]:
        assert client.delete(f"{TASKS}/{task['id']}", headers=alice.headers).status_code == 204
    for task in created[3:7]:
        changed = client.patch(f"{TASKS}/{task['id']}", json={"status": "done", "priority": "urgent"}, headers=alice.headers)
        assert changed.status_code == 200
    for filters in ({}, {"status": "done"}, {"status": "todo"}, {"priority": "urgent"}, {"priority": "low"},
                    {"status": "done", "priority": "urgent"}, {"q": "task"}):
        everything = listed(client, alice, limit=100, **filters)
        assert everything["total"] == len(everything["items"]), filters
        assert listed(client, alice, limit=1, **filters)["total"] == everything["total"], filters
