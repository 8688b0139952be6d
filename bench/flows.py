"""Runs locust (bench/locustfile.py) headless for the multi-step arms and returns every request
it made, as recorded by the locustfile's ``request`` listener."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


class LocustFailed(RuntimeError):
    """locust exited with an error or recorded nothing."""


def run(base: Path, label: str, plan: dict[str, Any], user_classes: list[str], *, seconds: float) -> list[dict[str, Any]]:
    """Run ``user_classes`` of the locustfile for ``seconds`` with ``plan``; the recorded requests.

    Each class's ``fixed_count`` (from ``plan``) sets its users, so the total is their sum.
    """
    base.mkdir(parents=True, exist_ok=True)
    plan_path, record_path = base / f"{label}-plan.json", base / f"{label}-record.jsonl"
    plan_path.write_text(json.dumps(plan))
    users = sum(plan.get(key, 0) for key in ("readers", "stormers", "creators"))
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--users", str(users),
            "--spawn-rate", str(users), "--run-time", f"{seconds:g}s", "--stop-timeout", "10",
            "--loglevel", "WARNING", "--only-summary", "--exit-code-on-error", "0", *user_classes]
    env = {"BENCH_PLAN": str(plan_path), "BENCH_RECORD": str(record_path)}
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90,
                               env={**os.environ, **env})
    (base / f"{label}-locust.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0 or not record_path.exists():
        raise LocustFailed(f"locust {label} exited {completed.returncode}:\n{completed.stderr[-2000:]}")
    recorded = [json.loads(line) for line in record_path.read_text().splitlines()]
    if not recorded:
        raise LocustFailed(f"locust {label} made no request:\n{completed.stderr[-2000:]}")
    return recorded
