"""The seeded counters are exactly what creating the same tasks one by one leaves."""

from __future__ import annotations

from datetime import UTC, datetime

from taskflow_tasks import counts

from bench.seed import counter_change, tasks_of


def test_bulk_counters_equal_one_create_at_a_time() -> None:
    now = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)
    tasks = tasks_of("owner", 450, now)
    one_by_one = {"_id": "owner", **counts.empty()}
    for task in tasks:
        one_by_one, _ = counts.apply(one_by_one, counts.delta(None, task), now)
    bulk, _ = counts.apply({"_id": "owner", **counts.empty()}, counter_change(tasks), now)
    assert bulk == one_by_one
    assert bulk["total"] == 450 and sum(bulk["by_status"].values()) == 450


def test_seeded_tasks_are_in_creation_order_with_a_spread_of_fields() -> None:
    tasks = tasks_of("owner", 40, datetime(2030, 6, 15, tzinfo=UTC))
    assert [task["seq"] for task in tasks] == list(range(40))
    assert all(a["created_at"] < b["created_at"] for a, b in zip(tasks, tasks[1:]))
    assert {task["status"] for task in tasks} == {"todo", "in_progress", "done"}
    assert any(task["due_date"] is None for task in tasks) and any(task["tags"] for task in tasks)
