"""locust's user classes for the multi-step arms; bench/flows.py runs them headless and reads
back what the ``request`` listener recorded.

Configuration comes from the environment, set by bench/flows.py:
``BENCH_PLAN`` (a JSON file: tokens, accounts, URLs, rates) and ``BENCH_RECORD`` (where every
request's outcome is written as JSON lines when the run ends).
"""

from __future__ import annotations

import json
import os
import time
from itertools import count

from locust import HttpUser, constant, constant_throughput, events, task

PLAN = json.loads(open(os.environ["BENCH_PLAN"]).read()) if "BENCH_PLAN" in os.environ else {}
RECORDED: list[dict] = []
_accounts = count()


@events.request.add_listener
def record(request_type, name, response_time, response_length, response=None, exception=None, **_kwargs):  # noqa: ANN001, ANN201
    """Keep each request: when it ended (epoch seconds), its name, its time in ms, its outcome."""
    entry = {"at": time.time(), "name": name, "ms": response_time, "ok": exception is None}
    if name == "create" and exception is None:
        entry["task_id"] = response.json()["id"]
        entry["sent_at"] = entry["at"] - response_time / 1000
    RECORDED.append(entry)


@events.quitting.add_listener
def write_record(environment, **_kwargs):  # noqa: ANN001, ANN201
    with open(os.environ["BENCH_RECORD"], "w") as out:
        for entry in RECORDED:
            out.write(json.dumps(entry) + "\n")


class TaskReader(HttpUser):
    """Reads the first page of its tasks at a fixed rate (``reader_rate`` per second per user)."""

    host = PLAN.get("tasks_url")
    fixed_count = PLAN.get("readers", 0)
    wait_time = constant_throughput(PLAN.get("reader_rate", 1))

    @task
    def first_page(self) -> None:
        self.client.get("/api/v1/tasks?page=1&limit=20", name="list",
                        headers={"Authorization": f"Bearer {PLAN.get('reader_token')}"})


class LoginStorm(HttpUser):
    """Logs in as fast as it can, each user with an account of its own (so that the throttling
    of one account's failures plays no part)."""

    host = PLAN.get("auth_url")
    fixed_count = PLAN.get("stormers", 0)
    wait_time = constant(0)

    def on_start(self) -> None:
        self.email = PLAN["accounts"][next(_accounts) % len(PLAN["accounts"])]

    @task
    def login(self) -> None:
        self.client.post("/api/v1/auth/login", name="login",
                         json={"email": self.email, "password": PLAN["password"]})


class TaskCreator(HttpUser):
    """Creates tasks at a fixed rate (``creator_rate`` per second per user)."""

    host = PLAN.get("tasks_url")
    fixed_count = PLAN.get("creators", 0)
    wait_time = constant_throughput(PLAN.get("creator_rate", 1))

    @task
    def create(self) -> None:
        self.client.post("/api/v1/tasks", name="create",
                         headers={"Authorization": f"Bearer {PLAN.get('creator_token')}"},
                         json={"title": "Measure the event latency"})
