"""B8, memory: the resident set of every gunicorn worker of each service of the system, after
all the other arms ran against it, read from /proc (``VmRSS``, and ``Pss`` from
``smaps_rollup``: a forked worker shares its pages with the master and its siblings, which RSS
counts in full for each of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..context import Bench
from ..figures import Target
from ..stack import SERVICES, command_line, find_processes
from . import entry

MIB = 1024 * 1024


def _kib(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"{field} not in {path}")


def workers(root: int, service: str) -> list[int]:
    """The worker pids of ``service``'s gunicorn under ``root`` (its master's children)."""
    gunicorns = find_processes(root, "gunicorn", f"services/{service}/gunicorn.conf.py")
    masters = [pid for pid in gunicorns if _parent(pid) not in gunicorns]
    return [pid for pid in gunicorns if pid not in masters]


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def run(bench: Bench) -> dict[str, Any]:
    assert bench.system.child is not None
    root = bench.system.child.process.pid
    by_service: dict[str, list[dict[str, float]]] = {}
    for service in SERVICES:
        by_service[service] = [
            {"pid": pid, "rss_mib": round(_kib(Path(f"/proc/{pid}/status"), "VmRSS") * 1024 / MIB, 1),
             "pss_mib": round(_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss") * 1024 / MIB, 1)}
            for pid in workers(root, service)
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
        measurements={"workers": by_service, "command": " ".join(command_line(root))},
        checks=[(Target("largest worker RSS", 80, at_most=True, unit="MiB"), largest)],
    )
