"""B2, framework efficiency: ``GET /api/v1/tasks/{id}`` (token check, one database read, the
response model, logs, metrics, trace context) against a bare Flask JSON endpoint (bench/bare.py)
on the same gunicorn settings, for each worker class: sync, gthread and gevent (the services'
default, ``taskflow_common.serving.DEFAULT_WORKER_CLASS``, which this arm is the evidence for).

A third endpoint, the bare one plus one ``find_one({_id})`` of the same task (``/bare/db``), splits
the gap: bare_db ÷ bare is what one FerretDB read costs any Flask endpoint on this machine, and
tasks ÷ bare_db what TaskFlow's own layers cost on top of it.

Each class gets a fresh tasks instance (scripts/service, beside the running system, on its
database) and a fresh bare app; wrk with 8 connections loads one endpoint after the other.
"""

from __future__ import annotations

from typing import Any

from taskflow_common.serving import DEFAULT_WORKER_CLASS

from .. import wrk
from ..context import Bench, User
from ..figures import Target, ratio
from ..stack import Service
from . import entry

CONNECTIONS = 8
WORKER_CLASSES = ("sync", "gthread", "gevent")


def measure(bench: Bench, user: User, task_id: str, worker_class: str) -> dict[str, float]:
    """Requests/s and p50 (ms) of the tasks GET, the bare endpoint and the bare one-read endpoint
    with ``worker_class``, and their ratios."""
    environment = {"GUNICORN_WORKER_CLASS": worker_class}
    base = bench.base / "b2"
    tasks = Service(base, bench.system, "tasks", **environment)
    bare = Service(base, bench.system, "bare", command=["gunicorn", "-c", "bench/gunicorn_bare.py"],
                   ready_path="/bare", **environment)
    try:
        figures = {}
        for name, url, headers in (("tasks", f"{tasks.url}/api/v1/tasks/{task_id}", user.headers),
                                   ("bare", f"{bare.url}/bare", {}),
                                   ("bare_db", f"{bare.url}/bare/db/{task_id}", {})):
            wrk.run(url, seconds=2, connections=CONNECTIONS, headers=headers)  # warm-up
            result = wrk.run(url, seconds=bench.seconds, connections=CONNECTIONS, headers=headers)
            figures[f"{name}_rate_per_s"] = round(result.rate, 1)
            figures[f"{name}_p50_ms"] = result.p50_ms
    finally:
        tasks.stop()
        bare.stop()
    figures["ratio"] = ratio(figures["tasks_rate_per_s"], figures["bare_rate_per_s"])
    figures["bare_db_over_bare"] = ratio(figures["bare_db_rate_per_s"], figures["bare_rate_per_s"])
    figures["tasks_over_bare_db"] = ratio(figures["tasks_rate_per_s"], figures["bare_db_rate_per_s"])
    bench.log(f"B2 {worker_class}: tasks {figures['tasks_rate_per_s']}/s, bare {figures['bare_rate_per_s']}/s, "
              f"bare + one read {figures['bare_db_rate_per_s']}/s")
    return figures


def run(bench: Bench, user: User, task_id: str) -> dict[str, Any]:
    by_class = {worker_class: measure(bench, user, task_id, worker_class) for worker_class in WORKER_CLASSES}
    best = max(by_class, key=lambda worker_class: by_class[worker_class]["tasks_rate_per_s"])
    others = ", ".join(f"{name} {figures['ratio']:g}" for name, figures in by_class.items() if name != best)
    default = "the default" if best == DEFAULT_WORKER_CLASS else f"default {DEFAULT_WORKER_CLASS}"
    return entry(
        "B2", "framework efficiency",
        method="wrk against GET /api/v1/tasks/{id}, a bare Flask JSON endpoint of the same size and the bare "
               "endpoint plus one find_one by _id of the same task, each on its own gunicorn with the services' "
               "shared settings (2 workers, 4 threads for gthread), per worker class; ratio = tasks req/s ÷ bare "
               "req/s; best = the class serving tasks fastest",
        tool="wrk", concurrency=f"{CONNECTIONS} connections", duration=f"{bench.seconds:g} s per endpoint and class, after 2 s of warm-up",
        data="1 task of the caller", handler="sqlite",
        measurements={"by_worker_class": by_class, "best_worker_class": best, "default_worker_class": DEFAULT_WORKER_CLASS},
        checks=[(Target(f"tasks ÷ bare, best class ({best}, {default}; {others})", 0.5), by_class[best]["ratio"])],
    )
