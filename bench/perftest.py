"""RabbitMQ PerfTest 2.22.1 (Maven Central, fetched by bench/bootstrap into .tools/perftest/) on the
machine's Java: the broker's own consumer latency for persistent, confirmed messages."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

LATENCY = re.compile(r"consumer latency min/median/75th/95th/99th (\d+)/(\d+)/(\d+)/(\d+)/(\d+) µs")


def parse(output: str) -> dict[str, float]:
    """The run's summary consumer latency in milliseconds: ``{min, p50, p75, p95, p99}``.

    Raises:
        ValueError: no summary line (PerfTest failed).
    """
    found = LATENCY.findall(output)
    if not found:
        raise ValueError(f"no consumer latency summary in PerfTest's output:\n{output[-2000:]}")
    values = [int(value) / 1000 for value in found[-1]]  # the last one is the whole run's
    return dict(zip(("min", "p50", "p75", "p95", "p99"), values, strict=True))


def run(amqp_url: str, *, rate: int, seconds: int, size: int, queue: str = "bench.perftest") -> dict[str, float]:
    """One producer and one consumer at ``rate`` messages/s of ``size`` bytes for ``seconds``:
    persistent messages, a publisher confirm awaited for each (at most one unconfirmed), on a
    quorum queue like TaskFlow's."""
    tools = Path(os.environ.get("TASKFLOW_TOOLS", Path(__file__).parents[1] / ".tools"))
    argv = ["java", "-cp", str(tools / "perftest" / "*"), "com.rabbitmq.perf.PerfTest", "--uri", amqp_url,
            "--producers", "1", "--consumers", "1", "--rate", str(rate), "--flag", "persistent", "--confirm", "1",
            "--quorum-queue", "--queue", queue, "--size", str(size), "--time", str(seconds)]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    return parse(completed.stdout + completed.stderr)
