"""Per-owner task counters: what each task contributes, how a write changes them, and the
statistics read from them (pure functions; :mod:`.store` keeps them, :mod:`.tasks` drives them).

A task contributes 1 to ``total``, to its ``by_status`` and ``by_priority`` entries, to
``open_due_by_day[<UTC day of due_date>]`` while it is open (not done) with a due date, to
``completed_by_day[<UTC day of completed_at>]`` while it is done. A write changes the counters
by ``contribution(after) - contribution(before)``: a *delta* of dotted paths, e.g. ``{"by_status.todo": -1, "by_status.done": 1, "completed_by_day.2030-01-31": 1}``.

From these, every statistic costs the same whatever the owner's task count, except the two
partial days, which :mod:`.store` counts with one indexed query each:

- overdue = open tasks due on days before today + open tasks due today before now;
- completed in the last 7 days = tasks completed on whole days after the day 7 × 24 h ago +
  those completed on that boundary day at or after that moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from .schemas import PRIORITIES, STATUSES, PriorityCounts, StatusCounts, TaskStats

Delta = dict[str, int]
COMPLETED_WINDOW = timedelta(days=7)
LEGACY_FIELDS = ("pages",)
"""Counters of earlier versions (creation-order page buckets, 10 KB for 100,000 tasks): dropped
by an owner's next counted change."""


def day(moment: datetime) -> str:
    """The UTC calendar day of ``moment``, ``YYYY-MM-DD`` (sorts as it reads)."""
    return moment.strftime("%Y-%m-%d")


def day_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The start of ``moment``'s UTC day and of the next one."""
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def contribution(task: Mapping[str, Any] | None) -> Delta:
    """What a stored task (None: no task) adds to its owner's counters."""
    if task is None:
        return {}
    added = {"total": 1, f"by_status.{task['status']}": 1, f"by_priority.{task['priority']}": 1}
    if task["status"] == "done":
        added[f"completed_by_day.{day(task['completed_at'])}"] = 1
    elif task["due_date"] is not None:
        added[f"open_due_by_day.{day(task['due_date'])}"] = 1
    return added


def delta(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> Delta:
    """How the counters change when a task goes from ``before`` to ``after`` (None: absent)."""
    old, new = contribution(before), contribution(after)
    changes = {path: new.get(path, 0) - old.get(path, 0) for path in old.keys() | new.keys()}
    return {path: change for path, change in sorted(changes.items()) if change}


def recount(tasks: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """The counters of an owner whose live tasks are ``tasks`` (each with ``status``, ``priority``,
    ``due_date`` and ``completed_at``), as :func:`apply` would have left them."""
    total: dict[str, int] = {}
    for task in tasks:
        for path, amount in contribution(task).items():
            total[path] = total.get(path, 0) + amount
    counters, _ = apply(empty(), total, now)
    return counters


def empty() -> dict[str, Any]:
    """The counters of an owner without tasks."""
    return {
        "total": 0,
        "by_status": {},
        "by_priority": {},
        "open_due_by_day": {},
        "completed_by_day": {},
    }


def _completed_cutoff(now: datetime) -> str:
    # Days before this can never again be inside the 7-day window, so they are forgotten.
    return day(now - COMPLETED_WINDOW - timedelta(days=1))


def apply(
    counters: Mapping[str, Any], change: Mapping[str, int], now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The counters after ``change``, and the MongoDB update operators that make it so.

    Entries that reach 0 are removed (``$unset``), and so are ``completed_by_day`` entries too old
    to matter again (a change to such a day is ignored) and :data:`LEGACY_FIELDS`, keeping the
    document small.
    """
    result = {key: counters.get(key, value) for key, value in empty().items()}
    result = _deep_copy(result)
    cutoff = _completed_cutoff(now)
    set_paths: dict[str, int] = {}
    unset_paths: dict[str, str] = {}
    for path, amount in change.items():
        parts = path.split(".")
        if parts[0] == "completed_by_day" and parts[1] < cutoff:
            continue
        container = result
        for part in parts[:-1]:
            container = container.setdefault(part, {})
        value = container.get(parts[-1], 0) + amount
        if value < 0:
            raise ValueError(f"counter {path} would become {value}")
        if value == 0 and path != "total":
            container.pop(parts[-1], None)
            unset_paths[path] = ""
            set_paths.pop(path, None)
        else:
            container[parts[-1]] = value
            set_paths[path] = value
            unset_paths.pop(path, None)
    for stale in [key for key in result["completed_by_day"] if key < cutoff]:
        del result["completed_by_day"][stale]
        unset_paths[f"completed_by_day.{stale}"] = ""
    unset_paths.update({field: "" for field in LEGACY_FIELDS if field in counters})
    operators: dict[str, Any] = {}
    if set_paths:
        operators["$set"] = set_paths
    if unset_paths:
        operators["$unset"] = unset_paths
    return result, operators


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    return value


def stats(counters: Mapping[str, Any], now: datetime, overdue_today: int, completed_on_boundary_day: int) -> TaskStats:
    """The statistics at ``now`` from an owner's counters plus the two partial days.

    Args:
        counters: the owner's counters (without a pending change).
        now: the moment the figures are for (UTC).
        overdue_today: how many of the owner's open tasks are due on ``now``'s UTC day before ``now``.
        completed_on_boundary_day: how many of the owner's done tasks were completed on the UTC day
            of ``now - 7 days``, at or after that moment.
    """
    today = day(now)
    boundary = day(now - COMPLETED_WINDOW)
    overdue = sum(count for due_day, count in counters.get("open_due_by_day", {}).items() if due_day < today)
    overdue += overdue_today
    completed = sum(count for done_day, count in counters.get("completed_by_day", {}).items() if done_day > boundary)
    completed += completed_on_boundary_day
    by_status = counters.get("by_status", {})
    by_priority = counters.get("by_priority", {})
    return TaskStats(
        total=counters.get("total", 0),
        by_status=StatusCounts(**{status: by_status.get(status, 0) for status in STATUSES}),
        by_priority=PriorityCounts(**{priority: by_priority.get(priority, 0) for priority in PRIORITIES}),
        overdue=overdue,
        completed_last_7_days=completed,
    )
