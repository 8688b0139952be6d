"""B5, login: logins per second under a storm ÷ what the machine's cores allow, ``cores ÷ one
bcrypt hash time``, the hash timed in the same run (hyperfine: a Python process checking one
password at auth's cost, minus the same process without the check); and the p99 of a reader's
``GET /api/v1/tasks`` during the storm ÷ its p99 when nothing else runs.

locust drives both: the storm users log in back to back, each with an account of its own, straight
to auth (the gateway's 30/min login limit is part of the defence, not of the service's capacity);
the reader lists its first page at a fixed rate, straight to tasks.

The CPU the storm used is accounted too (psutil): the machine's busy core-seconds and auth's
(its gunicorn master and workers), so the report shows how much of the cores auth had for its
hashes while the load generator, the readers, tasks and FerretDB ran on the same ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import bcrypt
import psutil

from .. import flows
from ..context import PASSWORD, Bench, User
from ..figures import Target, percentile, ratio
from ..stack import cpu_seconds, find_processes
from . import entry

STORMERS = 4
READERS = 2
READER_RATE = 10  # requests/s per reader
ROUNDS = 12


def bcrypt_seconds(bench: Bench) -> dict[str, float]:
    """One bcrypt check at ``ROUNDS``, timed by hyperfine as (with check) − (without), seconds."""
    hashed = bcrypt.hashpw(b"x" * 44, bcrypt.gensalt(ROUNDS)).decode()
    setup = "import bcrypt, os"
    with_check = f"{setup}; bcrypt.checkpw(b'x' * 44, os.environ['BENCH_HASH'].encode())"
    export = bench.base / "b5-hyperfine.json"
    subprocess.run(
        ["hyperfine", "--style", "none", "--warmup", "1", "--runs", "8", "--export-json", str(export),
         f"{sys.executable} -c \"{setup}\"", f"{sys.executable} -c \"{with_check}\""],
        check=True, capture_output=True, timeout=300, env={**os.environ, "BENCH_HASH": hashed},
    )
    results = json.loads(export.read_text())["results"]
    baseline, checked = (result["median"] for result in results)
    return {"process_s": round(baseline, 4), "process_with_hash_s": round(checked, 4),
            "hash_s": round(checked - baseline, 4)}


def busy_core_seconds() -> float:
    """CPU time the whole machine has spent on anything but idling and waiting for I/O, seconds."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def run(bench: Bench, reader: User, accounts: list[User]) -> dict[str, Any]:
    seconds = bench.seconds * 2
    plan = {
        "tasks_url": bench.system.service_url("tasks"), "auth_url": bench.system.service_url("auth"),
        "reader_token": reader.token, "readers": READERS, "reader_rate": READER_RATE,
        "accounts": [account.email for account in accounts], "password": PASSWORD,
    }
    idle = flows.run(bench.base / "b5", "idle", plan, ["TaskReader"], seconds=seconds)
    hashing = bcrypt_seconds(bench)
    assert bench.system.child is not None
    auth = find_processes(bench.system.child.process.pid, "services/auth/gunicorn.conf.py")

    auth_before, busy_before = cpu_seconds(auth), busy_core_seconds()
    storm = flows.run(bench.base / "b5", "storm", {**plan, "stormers": STORMERS}, ["TaskReader", "LoginStorm"],
                      seconds=seconds)
    auth_cpu_s, busy_cpu_s = cpu_seconds(auth) - auth_before, busy_core_seconds() - busy_before
    idle_list = [entry["ms"] for entry in idle if entry["name"] == "list" and entry["ok"]]
    storm_list = [entry["ms"] for entry in storm if entry["name"] == "list" and entry["ok"]]
    logins = [entry for entry in storm if entry["name"] == "login"]
    succeeded = [entry for entry in logins if entry["ok"]]
    window = max(entry["at"] for entry in logins) - min(entry["at"] - entry["ms"] / 1000 for entry in logins)
    logins_per_s = len(succeeded) / window
    cores = os.cpu_count() or 1
    ceiling = cores / hashing["hash_s"]
    idle_p99, storm_p99 = percentile(idle_list, 0.99), percentile(storm_list, 0.99)
    bench.log(f"B5 {logins_per_s:.2f} logins/s (ceiling {ceiling:.2f}), list p99 idle {idle_p99:.1f} ms, "
              f"storm {storm_p99:.1f} ms")
    return entry(
        "B5", "login",
        method=f"locust: {STORMERS} users logging in back to back (own accounts, straight to auth) beside "
               f"{READERS} readers listing their first page at {READER_RATE}/s each (straight to tasks); the same "
               "readers alone for the idle p99; one bcrypt check timed by hyperfine in the same run; CPU of the "
               "machine and of auth's processes during the storm (psutil)",
        tool="locust, hyperfine, psutil", concurrency=f"{STORMERS} login users + {READERS} readers at {READER_RATE}/s",
        duration=f"{seconds:g} s idle, {seconds:g} s storm",
        data=f"{len(accounts)} accounts, bcrypt cost {ROUNDS}; the reader's page of 20", handler="sqlite",
        measurements={
            "logins": len(logins), "logins_failed": len(logins) - len(succeeded),
            "logins_per_s": round(logins_per_s, 2), "cores": cores, **{f"bcrypt_{k}": v for k, v in hashing.items()},
            "ceiling_logins_per_s": round(ceiling, 2),
            "storm_busy_core_s": round(busy_cpu_s, 1), "storm_auth_core_s": round(auth_cpu_s, 1),
            "auth_share_of_busy": round(auth_cpu_s / busy_cpu_s, 3) if busy_cpu_s else None,
            "auth_core_s_per_login": round(auth_cpu_s / len(succeeded), 4) if succeeded else None,
            "list_idle_ms": {"p50": round(percentile(idle_list, 0.5), 1), "p99": round(idle_p99, 1), "n": len(idle_list)},
            "list_storm_ms": {"p50": round(percentile(storm_list, 0.5), 1), "p99": round(storm_p99, 1), "n": len(storm_list)},
        },
        checks=[(Target("logins/s ÷ (cores ÷ bcrypt time)", 0.8), ratio(logins_per_s, ceiling)),
                (Target("GET /tasks p99 storm ÷ idle", 2, at_most=True), ratio(storm_p99, idle_p99))],
    )
