"""The state every arm shares: the running system, its users and their tasks, the run's
directory and how long each measurement lasts."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .stack import Infra, System

PASSWORD = "bench password 1"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages of the machine (other users' load included)."""
    return [round(value, 2) for value in os.getloadavg()]


@dataclass
class User:
    """A registered user: id, email and a valid access token."""

    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Bench:
    """One run of the benchmarks.

    Attributes:
        base: the run's temporary directory (state of every process it starts, logs).
        seconds: how long one throughput measurement lasts; the other durations follow from it.
        infra, system: FerretDB (SQLite) + RabbitMQ, and the whole system on them (None when only
            B7 runs: it starts its own).
    """

    base: Path
    seconds: float
    infra: Infra | None
    system: System | None
    log_lines: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        line = f"[bench {time.strftime('%H:%M:%S')}] {message}"
        self.log_lines.append(line)
        print(line, flush=True)

    def url(self, service: str, path: str) -> str:
        """A service's own address (behind the gateway) + ``path``."""
        return f"{self.system.service_url(service)}{path}"

    def register(self, label: str) -> User:
        """Register a new user through auth's API (one bcrypt hash)."""
        email = f"{label}-{uuid.uuid4().hex[:8]}@bench.example"
        answer = requests.post(self.url("auth", "/api/v1/auth/register"),
                               json={"email": email, "password": PASSWORD, "name": label}, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        return User(body["user"]["id"], email, body["access_token"])

    def create_task(self, user: User, **fields: Any) -> str:
        """Create a task through the tasks API; returns its id."""
        answer = requests.post(self.url("tasks", "/api/v1/tasks"), headers=user.headers,
                               json={"title": "Write the benchmark report", **fields}, timeout=30)
        answer.raise_for_status()
        return answer.json()["id"]
