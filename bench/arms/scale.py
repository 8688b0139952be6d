"""B7, scale: ``GET /api/v1/tasks/stats`` and the first page of ``GET /api/v1/tasks`` for a user
with 100 tasks ÷ the same for a user with 100,000 tasks, with 1,000,000 tasks of 1,000 other
users in the same collection, on FerretDB's PostgreSQL handler.

A PostgreSQL and FerretDB of the arm's own are seeded (bench/seed.py), then the service creates
its indexes (its own start-up code; PostgreSQL builds them faster over rows already in than row
by row) and a tasks instance serves the requests.
hyperfine times each request as one ``curl`` (a few milliseconds of the seconds measured).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import requests
from bson import ObjectId
from pymongo import MongoClient

from .. import seed
from ..context import Bench, User
from ..figures import Target, ratio
from ..stack import PostgresStore, Service
from . import entry

SMALL, BIG, OTHERS, OTHER_TASKS = 100, 100_000, 1_000, 1_000
ROUNDS, RUNS_PER_ROUND = 3, 2


def _seed(bench: Bench, store: PostgresStore, small: User, big: User) -> tuple[int, dict[str, float]]:
    """Seed the three owners and the copies, then let the service create its indexes over them
    (its own start-up code, :func:`taskflow_tasks.assemble`). Returns the number of tasks and
    the seconds each phase took."""
    from taskflow_tasks import assemble
    from taskflow_tasks.settings import TasksSettings
    from taskflow_tasks.store import CountStore

    phases: dict[str, float] = {}
    started = time.monotonic()
    seed.prepare_bulk_load(store.psql())
    client = MongoClient(store.mongodb_uri)
    try:
        db = client["taskflow_tasks"]
        count_store, now = CountStore(lambda: db), datetime.now(UTC)
        template = str(ObjectId())
        for owner, count in ((small.id, SMALL), (big.id, BIG), (template, OTHER_TASKS)):
            seed.seed_owner(db, count_store, owner, count, now)
        phases["insert_many_s"] = time.monotonic() - started
        seed.replicate_owner(store.psql(), "taskflow_tasks", template, OTHERS - 1)
        total = seed.count_rows(store.psql(), "taskflow_tasks", "tasks")
        phases["copies_s"] = time.monotonic() - started - sum(phases.values())
    finally:
        client.close()
    service = assemble(TasksSettings(mongodb_uri=store.mongodb_uri, rabbitmq_url=bench.infra.rabbitmq_url))
    service.mongo.close()
    phases["indexes_s"] = time.monotonic() - started - sum(phases.values())
    bench.log(f"B7 seeded {total:,} tasks and built the indexes in {time.monotonic() - started:.0f} s "
              f"({', '.join(f'{name} {value:.0f}' for name, value in phases.items())})")
    return total, {name: round(value, 1) for name, value in phases.items()}


def timed_rounds(bench: Bench, commands: list[str]) -> list[list[float]]:
    """Each command's times (seconds) over :data:`ROUNDS` hyperfine runs of all of them in turn
    (:data:`RUNS_PER_ROUND` each, one warm-up in the first), so that the machine's other load
    falls on every command alike instead of on whichever ran while it peaked."""
    times: list[list[float]] = [[] for _ in commands]
    for number in range(ROUNDS):
        export = bench.base / f"b7-hyperfine-{number}.json"
        subprocess.run(["hyperfine", "--style", "none", "--warmup", "1" if number == 0 else "0",
                        "--runs", str(RUNS_PER_ROUND), "--export-json", str(export), *commands],
                       check=True, capture_output=True, timeout=600)
        for found, result in zip(times, json.loads(export.read_text())["results"], strict=True):
            found += result["times"]
    return times


def run(bench: Bench, small: User, big: User) -> dict[str, Any]:
    store = PostgresStore(bench.base / "b7", bench.system.env)
    try:
        total, phases = _seed(bench, store, small, big)
        tasks = Service(bench.base / "b7", bench.system, "tasks", MONGODB_URI=store.mongodb_uri)
        try:
            urls = {"stats": "/api/v1/tasks/stats", "first_page": "/api/v1/tasks?page=1&limit=20"}
            answers = {(name, label): requests.get(tasks.url + path, headers=user.headers, timeout=120).json()
                       for name, path in urls.items() for label, user in (("small", small), ("big", big))}
            assert answers[("stats", "big")]["total"] == BIG and answers[("first_page", "big")]["total"] == BIG
            assert answers[("stats", "small")]["total"] == SMALL and len(answers[("first_page", "small")]["items"]) == 20
            commands = [f"curl -sf -o /dev/null -H 'Authorization: Bearer {user.token}' '{tasks.url}{path}'"
                        for path in urls.values() for user in (small, big)]
            times = timed_rounds(bench, commands)
        finally:
            tasks.stop()
    finally:
        store.stop()
    medians = [statistics.median(found) for found in times]
    seconds = {"stats": {"small": medians[0], "big": medians[1]}, "first_page": {"small": medians[2], "big": medians[3]}}
    stats, page = (ratio(seconds[name]["small"], seconds[name]["big"]) for name in ("stats", "first_page"))
    bench.log(f"B7 stats {seconds['stats']} s, first page {seconds['first_page']} s")
    runs = ROUNDS * RUNS_PER_ROUND
    return entry(
        "B7", "scale",
        method="hyperfine times curl GET /api/v1/tasks/stats and GET /api/v1/tasks?page=1&limit=20 (one request "
               "at a time, straight to a tasks instance) for the 100-task and the 100,000-task user, the four "
               f"commands in {ROUNDS} rounds of {RUNS_PER_ROUND} runs each; ratio = small ÷ big of the median times. "
               "Seeding: insert_many through FerretDB of the tasks in the service's document format and their "
               "per-owner counters (task_counts), the 999 other owners copied from one inside PostgreSQL; the "
               "service's own start-up then builds its indexes",
        tool="hyperfine, curl", concurrency="1",
        duration=f"{runs} runs per request after 1 warm-up", handler="postgresql",
        data=f"{total:,} tasks: {SMALL} + {BIG:,} + {OTHERS:,} other users × {OTHER_TASKS:,}",
        measurements={"median_seconds": {name: {k: round(v, 3) for k, v in by.items()} for name, by in seconds.items()},
                      "times_s": [[round(value, 3) for value in found] for found in times],
                      "seeding_s": phases},
        checks=[(Target("stats: small ÷ big", 0.67), stats), (Target("first page: small ÷ big", 0.67), page)],
    )
