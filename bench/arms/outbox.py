"""B4, outbox cost: ``POST /api/v1/tasks`` p50 with the tasks worker's relay running ÷ with it
stopped. Each write still records its outbox pointer and hands its events to the in-process
dispatcher; what differs is the relay polling the pointers beside the writes. The relay is
stopped by pausing the tasks worker process (SIGSTOP, SIGCONT after), which leaves the rest of
the system, honcho included, exactly as it was.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from .. import wrk
from ..context import Bench, User
from ..figures import Target, ratio, spread
from ..stack import find_processes, paused
from . import entry

BODY = json.dumps({"title": "Measure the outbox", "priority": "high", "tags": ["bench"]})


def run(bench: Bench, user: User) -> dict[str, Any]:
    url = bench.url("tasks", "/api/v1/tasks")
    assert bench.system.child is not None
    worker = find_processes(bench.system.child.process.pid, "taskflow_tasks.worker")
    if not worker:
        raise RuntimeError("the tasks worker is not running")

    def post() -> wrk.WrkResult:
        return wrk.run(url, seconds=bench.seconds, connections=1, headers=user.headers, method="POST", body=BODY)

    post()  # warm-up
    p50s: dict[str, list[float]] = {"relay running": [], "relay stopped": []}
    for _ in range(2):
        p50s["relay running"].append(post().p50_ms)
        with paused(worker):
            p50s["relay stopped"].append(post().p50_ms)
    running, stopped = statistics.median(p50s["relay running"]), statistics.median(p50s["relay stopped"])
    bench.log(f"B4 POST p50 relay running {running} ms, stopped {stopped} ms")
    return entry(
        "B4", "outbox cost",
        method="wrk POST /api/v1/tasks with one connection, back to back, straight to tasks; relay running "
               "and stopped (tasks worker paused) interleaved twice, median p50s compared",
        tool="wrk", concurrency="1 connection", duration=f"2 × {bench.seconds:g} s per arm",
        data="the tasks created by the arm itself (a few hundred)", handler="sqlite",
        measurements={"post_p50_ms": p50s, "spread": round(max(spread(v) for v in p50s.values()), 3)},
        checks=[(Target("POST p50 relay running ÷ stopped", 1.1, at_most=True), ratio(running, stopped))],
    )
