"""B4, outbox cost: ``POST /api/v1/tasks`` p50 with the tasks worker's relay running ÷ with it
stopped. Each write still stores its events with it and hands them to the in-process
dispatcher; what differs is the relay polling for marked documents beside the writes. The relay is
stopped by pausing the tasks worker process (SIGSTOP, SIGCONT after), which leaves the rest of
the system, its process manager included, exactly as it was.

The settings alternate in ABBA order (running, stopped, stopped, running, twice), so a drift of
the machine or of the growing collection weighs on both alike; the worker's own CPU time while
the relay runs says directly what polling costs.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from .. import wrk
from ..context import Bench, User
from ..figures import Target, ratio, spread
from ..stack import cpu_seconds, find_processes, paused
from . import entry

BODY = json.dumps({"title": "Measure the outbox", "priority": "high", "tags": ["bench"]})
RUNNING, STOPPED = "relay running", "relay stopped"
ORDER = (RUNNING, STOPPED, STOPPED, RUNNING) * 2


def run(bench: Bench, user: User) -> dict[str, Any]:
    url = bench.url("tasks", "/api/v1/tasks")
    assert bench.system.child is not None
    worker = find_processes(bench.system.child.process.pid, "taskflow_tasks.worker")
    if not worker:
        raise RuntimeError("the tasks worker is not running")

    def post() -> wrk.WrkResult:
        return wrk.run(url, seconds=bench.seconds, connections=1, headers=user.headers, method="POST", body=BODY)

    post()  # warm-up
    p50s: dict[str, list[float]] = {RUNNING: [], STOPPED: []}
    worker_cpu_s, running_posts = 0.0, 0
    for setting in ORDER:
        if setting == RUNNING:
            before = cpu_seconds(worker)
            result = post()
            worker_cpu_s += cpu_seconds(worker) - before
            running_posts += result.requests
        else:
            with paused(worker):
                result = post()
        p50s[setting].append(result.p50_ms)
    running, stopped = statistics.median(p50s[RUNNING]), statistics.median(p50s[STOPPED])
    bench.log(f"B4 POST p50 relay running {running} ms, stopped {stopped} ms")
    return entry(
        "B4", "outbox cost",
        method="wrk POST /api/v1/tasks with one connection, back to back, straight to tasks; relay running "
               "and stopped (tasks worker paused) in ABBA order twice, median p50s compared; the worker's CPU "
               "time (user + system) while the relay ran, per POST",
        tool="wrk, psutil", concurrency="1 connection", duration=f"4 × {bench.seconds:g} s per arm",
        data="the tasks created by the arm itself (a few thousand)", handler="sqlite",
        measurements={
            "post_p50_ms": p50s,
            "spread": round(max(spread(v) for v in p50s.values()), 3),
            "worker_cpu_ms_per_post": round(1000 * worker_cpu_s / max(running_posts, 1), 3),
            "posts_while_running": running_posts,
        },
        checks=[(Target("POST p50 relay running ÷ stopped", 1.1, at_most=True), ratio(running, stopped))],
    )
