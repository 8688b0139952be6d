"""wrk (Debian's package) as the peak-rate load generator: one run, its exact figures.

Every run uses ``bench/wrk.lua``, whose ``done`` hook prints one ``WRK_JSON {...}`` line with the
request count, errors and latency percentiles in microseconds, so nothing is read back from
wrk's rounded human output.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk.lua")
MARK = "WRK_JSON "


class WrkFailed(RuntimeError):
    """wrk did not run, printed no figures, or most of its requests failed."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds; ``errors`` counts failed requests (non-2xx/3xx
    answers included)."""

    requests: int
    duration_s: float
    errors: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.duration_s

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests, "errors": self.errors, "duration_s": round(self.duration_s, 2),
            "rate_per_s": round(self.rate, 1), "mean_ms": self.mean_ms, "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
        }


def parse(output: str) -> WrkResult:
    """The figures of a wrk run from its standard output.

    Raises:
        WrkFailed: no ``WRK_JSON`` line (wrk failed before finishing).
    """
    line = next((line for line in output.splitlines() if line.startswith(MARK)), None)
    if line is None:
        raise WrkFailed(f"wrk printed no figures:\n{output[-2000:]}")
    figures = json.loads(line[len(MARK):])
    latency = {name: value / 1000 for name, value in figures["latency_us"].items()}
    return WrkResult(
        requests=figures["requests"],
        duration_s=figures["duration_us"] / 1e6,
        errors=sum(figures["errors"].values()),
        mean_ms=round(latency["mean"], 3),
        p50_ms=latency["p50"],
        p90_ms=latency["p90"],
        p99_ms=latency["p99"],
        max_ms=latency["max"],
    )


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: str | None = None,
) -> WrkResult:
    """Load ``url`` for ``seconds`` (rounded to whole seconds) with ``connections`` kept-alive
    connections on ``threads``.

    Raises:
        WrkFailed: wrk failed, or more than 1 % of the requests failed (an arm measuring errors
            measures nothing).
    """
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(SCRIPT)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY": body or ""}
    completed = subprocess.run([*argv, url], capture_output=True, text=True, env=env, timeout=seconds + 60)
    result = parse(completed.stdout + completed.stderr)
    if result.requests == 0 or result.errors > result.requests / 100:
        raise WrkFailed(f"{result.errors} of {result.requests} requests to {url} failed")
    return result
