"""What the arms run against, started the way ``make run`` starts it: the project's own scripts
(scripts/ferretdb, scripts/rabbitmq, scripts/run → supervisor,
scripts/service) on free ports, each copy with its state in the run's temporary directory.

The test suite's process helpers (:mod:`tests.support`) are reused rather than copied: they
start exactly these scripts.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
import requests

from tests.support.infra import Infra
from tests.support.processes import Child, free_port, wait_for
from tests.support.system import SERVICES, System

BENCH_ENVIRONMENT = {
    # What `make run` uses, stated so that a caller's environment cannot change a figure.
    "MONGODB_DB_PREFIX": "taskflow_",
    "TASKFLOW_ENV": "development",
    "BCRYPT_ROUNDS": "12",
    "WEB_CONCURRENCY": "2",
    "GUNICORN_THREADS": "4",
    "LOG_LEVEL": "INFO",
    # The gateway's per-client limits would turn a load test into a test of 429s (see README).
    "GATEWAY_RATE_LIMITING": "off",
}


def start_infra(base: Path) -> Infra:
    """FerretDB (SQLite handler) and RabbitMQ on free ports, state under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    infra = Infra(base)
    infra.env = {**infra.env, "FERRETDB_HANDLER": "sqlite"}
    return infra.start()


def start_system(base: Path, infra: Infra, *, replicas: int = 1, timeout: float = 180,
                 **environment: str) -> System:
    """The four services (``replicas`` instances of each), their workers and the gateway under
    supervisor (scripts/run), ready within ``timeout`` seconds."""
    base.mkdir(parents=True, exist_ok=True)
    system = System(base, infra, replicas=replicas, **{**BENCH_ENVIRONMENT, **environment})
    if "GUNICORN_WORKER_CLASS" not in environment:
        system.env.pop("GUNICORN_WORKER_CLASS", None)  # each service's own default, whatever the shell says
    return system.start(timeout=timeout)


def find_processes(root: int, *fragments: str) -> list[psutil.Process]:
    """Processes under ``root`` whose command line contains every one of ``fragments``."""
    found = []
    for process in psutil.Process(root).children(recursive=True):
        try:
            command = " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
        if all(fragment in command for fragment in fragments):
            found.append(process)
    return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU time (user + system) ``processes`` have used so far, seconds."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


@contextmanager
def paused(processes: list[psutil.Process]) -> Iterator[None]:
    """Stop ``processes`` (SIGSTOP) for the block and let them go on after (SIGCONT)."""
    for process in processes:
        process.suspend()
    try:
        yield
    finally:
        for process in processes:
            process.resume()


class Service:
    """One more instance of a service (scripts/service) beside a running system, on its own port,
    with its own environment: how the arms try worker classes and tracing settings."""

    def __init__(self, base: Path, system: System, name: str, *, command: list[str] | None = None,
                 ready_path: str = "/readyz", **environment: str) -> None:
        self.port = free_port()
        self.ready_path = ready_path
        self.url = f"http://127.0.0.1:{self.port}"
        # Its own metrics port too: the system's instance of the service already serves on its own.
        env = {**system.env, f"{name.upper()}_PORT": str(self.port), f"{name.upper()}_METRICS_PORT": str(free_port()),
               **environment}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        base.mkdir(parents=True, exist_ok=True)
        self.child = Child(command or ["scripts/service", name], env=env, log_path=base / f"{name}-{self.port}.log")
        try:
            wait_for(self._ready, timeout=120, interval=0.25, what=f"{name} on {self.port}")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if not self.child.running():
            raise RuntimeError(f"service exited:\n{self.child.log_tail()}")
        try:
            return requests.get(f"{self.url}{self.ready_path}", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    def stop(self) -> None:
        self.child.stop()


__all__ = ["SERVICES", "Infra", "Service", "System", "cpu_seconds", "find_processes", "paused",
           "start_infra", "start_system"]
