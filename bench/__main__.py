"""``make bench``: runs the arms of issue 11 against a private copy of the system and writes
``bench/results/<timestamp>.json``, a table on stdout and ``docs/benchmarks.md``.

Usage: ``bench/run [--arms B1,B5] [--seconds 10] [--b7-sizes 1000,100000] [--no-docs]`` (bench/run
installs what is missing, then runs this module). B7 starts a system of its own per size and B9
one per instance count; run without the others (``--arms B7``, ``--arms B9``) they need no other.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import report
from .arms import events, framework, gateway, login, memory, outbox, replicas, scale, tracing
from .context import Bench, load_average
from .machine import machine, versions
from .stack import start_infra, start_system

ARMS = ("B1", "B2", "B6", "B5", "B3", "B4", "B7", "B8", "B9")
STANDALONE = {"B7", "B9"}
"""Arms that start systems of their own."""
"""Run order: reads first (the writes of B3 and B4 make FerretDB's scans longer), B3 before B4
(B4 writes as fast as one connection can, hundreds of tasks whose events keep the tasks database's
writes busy long after; see bench/findings.md), memory last of the arms on the shared system, then
B9 on systems of its own."""


def run_arms(bench: Bench, selected: list[str], b7_sizes: tuple[int, ...] = scale.SIZES) -> list[dict[str, Any]]:
    if not set(selected) <= STANDALONE:
        reader = bench.register("reader")
        task_id = bench.create_task(reader)
    results = []
    for arm in [arm for arm in ARMS if arm in selected]:
        bench.log(f"{arm} starts; load average {load_average()}")
        if arm == "B1":
            results.append(gateway.run(bench, reader, task_id))
        elif arm == "B2":
            results.append(framework.run(bench, reader, task_id))
        elif arm == "B6":
            results.append(tracing.run(bench, reader, task_id))
        elif arm == "B5":
            accounts = [bench.register(f"storm{number}") for number in range(login.STORMERS)]
            results.append(login.run(bench, reader, accounts))
        elif arm == "B4":
            results.append(outbox.run(bench, bench.register("writer")))
        elif arm == "B3":
            results.append(events.run(bench, bench.register("events")))
        elif arm == "B7":
            results.append(scale.run(bench, b7_sizes))
        elif arm == "B8":
            results.append(memory.run(bench))
        elif arm == "B9":
            results.append(replicas.run(bench))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ",".join(ARMS))
    parser.add_argument("--seconds", type=float, default=10, help="one throughput measurement, seconds")
    parser.add_argument("--b7-sizes", default=",".join(map(str, scale.SIZES)),
                        help="B7's store sizes in tasks, comma-separated (a quick check: 1000)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the run's temporary directory")
    args = parser.parse_args(argv)
    # A SIGTERM stops the run like Ctrl-C does: every process started is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    selected = [arm.strip().upper() for arm in args.arms.split(",")]
    b7_sizes = tuple(sorted(int(size) for size in args.b7_sizes.split(",")))
    started, began = datetime.now(UTC), time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="taskflow-bench-"))
    results: dict[str, Any] = {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "load_average_before": load_average(),
        "machine": machine(), "versions": versions(), "seconds": args.seconds, "arms": [],
    }
    try:
        if set(selected) <= STANDALONE:
            results["arms"] = run_arms(Bench(base, args.seconds, None, None), selected, b7_sizes)
        else:
            infra = start_infra(base / "infra")
            try:
                system = start_system(base / "system", infra, ACCESS_TOKEN_TTL="3600")
                try:
                    bench = Bench(base, args.seconds, infra, system)
                    bench.log(f"system up in {time.monotonic() - began:.0f} s; state in {base}")
                    results["arms"] = run_arms(bench, selected, b7_sizes)
                finally:
                    system.stop()
            finally:
                infra.stop()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["load_average_after"] = load_average()
    path = report.write_json(results, report.ROOT / "bench" / "results")
    print(report.table(results))
    print(f"\n{path.relative_to(report.ROOT)} written in {results['duration_s']:.0f} s")
    if not args.no_docs and selected == list(ARMS) and b7_sizes == scale.SIZES:
        findings = (report.ROOT / "bench" / "findings.md").read_text()
        (report.ROOT / "docs" / "benchmarks.md").write_text(report.markdown(results, findings))
        print("docs/benchmarks.md written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
