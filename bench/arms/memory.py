"""B8, memory: the resident set of every gunicorn worker of each service of the system, after
all the other arms ran against it, read with psutil from /proc (RSS, and PSS from
``smaps_rollup``: a forked worker shares its pages with the master and its siblings, which RSS
counts in full for each of them)."""

from __future__ import annotations

from typing import Any

import psutil

from ..context import Bench
from ..figures import Target
from ..stack import SERVICES, find_processes
from . import entry

MIB = 1024 * 1024


def workers(root: int, service: str) -> list[psutil.Process]:
    """The worker processes of ``service``'s gunicorn under ``root`` (its master's children)."""
    gunicorns = find_processes(root, "gunicorn", f"services/{service}/gunicorn.conf.py")
    pids = {process.pid for process in gunicorns}
    return [process for process in gunicorns if process.ppid() in pids]


def run(bench: Bench) -> dict[str, Any]:
    assert bench.system.child is not None
    root = bench.system.child.process.pid
    by_service: dict[str, list[dict[str, float]]] = {}
    for service in SERVICES:
        by_service[service] = [
            {"pid": process.pid, "rss_mib": round(memory.rss / MIB, 1), "pss_mib": round(memory.pss / MIB, 1)}
            for process in workers(root, service)
            for memory in [process.memory_full_info()]
        ]
        if not by_service[service]:
            raise RuntimeError(f"no gunicorn worker of {service} found")
    largest = max(worker["rss_mib"] for found in by_service.values() for worker in found)
    bench.log(f"B8 largest worker RSS {largest} MiB")
    return entry(
        "B8", "memory",
        method="VmRSS and Pss from /proc of every gunicorn worker of the system's four services, after the "
               "other arms (B1–B7) ran",
        tool="/proc", concurrency="—", duration="after the run", data="what the run left", handler="sqlite",
        measurements={"workers": by_service, "command": " ".join(psutil.Process(root).cmdline())},
        checks=[(Target("largest worker RSS", 80, at_most=True, unit="MiB"), largest)],
    )
