"""B9, replicas (issue 21): read and write throughput through the gateway with 1, 2 and 4 instances
of each service (``REPLICAS``), as ratios to one instance, with the CPU time each request costs;
and the p99 of reads while every instance of tasks restarts in turn (``scripts/reload tasks``)
against the steady state, with 2 instances.

Each instance count gets a system of its own (scripts/run with ``REPLICAS=n``, its own databases)
on one FerretDB and RabbitMQ. wrk loads ``GET /api/v1/tasks/{id}`` (reads) and ``POST
/api/v1/tasks`` (writes) through the gateway with 16 connections. CPU per request: the CPU time
(user + system) every process of the system and of FerretDB and RabbitMQ used during the
measurement, divided by the requests answered. The restart's p99 is measured at a moderate load
(4 connections; 16 would measure queueing): wrk runs back to back until the reload ends, and the
worst p99 of those runs is compared with a steady run's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psutil
import requests

from .. import wrk
from ..context import PASSWORD, Bench
from ..figures import Target, ratio
from ..stack import cpu_seconds, start_infra, start_system
from . import entry

INSTANCES = (1, 2, 4)
CONNECTIONS = 16
LATENCY_CONNECTIONS = 4
"""The p99s compare a moderate load: with 16 connections queueing would hide the restart."""
ROOT = Path(__file__).resolve().parents[2]


def scaling(rates: dict[int, float]) -> dict[int, float]:
    """Each instance count's rate as a ratio to one instance's: ``{1: 1.0, 2: …, 4: …}``.

    Raises:
        KeyError: no rate for one instance.
    """
    return {count: ratio(rate, rates[1]) for count, rate in sorted(rates.items())}


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _measure(url: str, processes: list[psutil.Process], seconds: float, headers: dict[str, str],
             **request: str) -> dict[str, float]:
    """One wrk run: rate, p99 and CPU milliseconds per answered request."""
    before = cpu_seconds(processes)
    result = wrk.run(url, seconds=seconds, connections=CONNECTIONS, headers=headers, **request)
    cpu = cpu_seconds(processes) - before
    return {"rate_per_s": round(result.rate, 1), "p99_ms": result.p99_ms,
            "cpu_ms_per_request": round(1000 * cpu / (result.requests - result.errors), 3)}


def _during_restart(system: Any, url: str, headers: dict[str, str], seconds: float) -> dict[str, float]:
    """Reads with 4 connections, steady and then while scripts/reload restarts each instance of
    tasks in turn: the steady p99, the worst p99 of the back-to-back wrk runs during the restart,
    and how many of their requests failed (wrk.run refuses more than 1 %)."""
    steady = wrk.run(url, seconds=seconds, connections=LATENCY_CONNECTIONS, headers=headers)
    reload = subprocess.Popen([str(ROOT / "scripts/reload"), "tasks"], env=system.env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = []
    while reload.poll() is None:
        runs.append(wrk.run(url, seconds=seconds, connections=LATENCY_CONNECTIONS, headers=headers))
    if reload.returncode != 0:
        raise RuntimeError(f"scripts/reload tasks failed: {reload.stderr.read()}")
    return {"steady_p99_ms": steady.p99_ms, "runs": len(runs), "p99_ms": max(run.p99_ms for run in runs),
            "requests": sum(run.requests for run in runs), "errors": sum(run.errors for run in runs)}


def run(bench: Bench) -> dict[str, Any]:
    infra = start_infra(bench.base / "b9-infra")
    by_count: dict[int, dict[str, Any]] = {}
    restart: dict[str, float] = {}
    try:
        for count in INSTANCES:
            system = start_system(bench.base / f"b9-{count}", infra, replicas=count, timeout=600,
                                  MONGODB_DB_PREFIX=f"b9_{count}_")
            try:
                gateway = system.gateway_url
                body = requests.post(f"{gateway}/api/v1/auth/register", timeout=30, json={
                    "email": f"b9-{count}@bench.example", "password": PASSWORD, "name": "b9"}).json()
                headers = {"Authorization": f"Bearer {body['access_token']}"}
                task = requests.post(f"{gateway}/api/v1/tasks", json={"title": "read"}, headers=headers, timeout=30)
                read_url = f"{gateway}/api/v1/tasks/{task.json()['id']}"
                processes = _tree(system.child.process.pid) + [
                    process for child in infra.children for process in _tree(child.process.pid)]
                wrk.run(read_url, seconds=2, connections=CONNECTIONS, headers=headers)  # warm-up
                by_count[count] = {
                    "read": _measure(read_url, processes, bench.seconds, headers),
                    "write": _measure(f"{gateway}/api/v1/tasks", processes, bench.seconds, headers,
                                      method="POST", body='{"title": "written by B9"}'),
                }
                if count == 2:
                    restart = _during_restart(system, read_url, headers, bench.seconds)
                bench.log(f"B9 {count} instance(s): reads {by_count[count]['read']['rate_per_s']}/s, "
                          f"writes {by_count[count]['write']['rate_per_s']}/s")
            finally:
                system.stop()
    finally:
        infra.stop()
    reads = scaling({count: figures["read"]["rate_per_s"] for count, figures in by_count.items()})
    writes = scaling({count: figures["write"]["rate_per_s"] for count, figures in by_count.items()})
    restart["p99_over_steady"] = ratio(restart["p99_ms"], restart["steady_p99_ms"])
    return entry(
        "B9", "replicas behind the gateway",
        method="per instance count (REPLICAS 1, 2, 4; a system each), wrk through the gateway: GET /api/v1/tasks/{id} "
               "and POST /api/v1/tasks; ratios to 1 instance; CPU per request = CPU time of every process of "
               "the system, FerretDB and RabbitMQ ÷ answered requests; with 2 instances, reads while "
               "scripts/reload restarts each instance of tasks in turn (worst p99 of back-to-back runs, "
               f"{LATENCY_CONNECTIONS} connections) against the steady p99 at the same load",
        tool="wrk", concurrency=f"{CONNECTIONS} connections (throughput), {LATENCY_CONNECTIONS} (restart p99)",
        duration=f"{bench.seconds:g} s per figure after 2 s of warm-up; the restart as long as it lasts",
        data="1 task read, new tasks written", handler="sqlite",
        measurements={"by_instances": by_count, "read_ratio_to_1": reads, "write_ratio_to_1": writes,
                      "rolling_restart": restart},
        checks=[(Target("failed reads during a rolling restart", 0, at_most=True), restart["errors"]),
                (Target("reads/s with 2 instances ÷ 1", 0.9), reads[2])],
        notes="On 2 cores one instance's two gunicorn workers, nginx and FerretDB already share every core: "
              "more instances add processes, not capacity, so the ratios say where that stops paying.",
    )
