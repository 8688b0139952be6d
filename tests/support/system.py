"""The whole TaskFlow system for end-to-end tests, started exactly as `make run` starts it
(scripts/run → supervisor), on free ports, with state in a temporary directory: on the session's
own FerretDB and RabbitMQ passed in as MONGODB_URI / RABBITMQ_URL, or, without them, on a
FerretDB and RabbitMQ node that scripts/run starts itself as it does for `make run`."""

from __future__ import annotations

import random
import subprocess
import uuid
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .infra import Infra, own_environment
from .processes import ROOT, Child, free_port, wait_for

SERVICES = {"auth": "AUTH_PORT", "tasks": "TASKS_PORT", "admin": "ADMIN_PORT", "notify": "NOTIFY_PORT"}


class System:
    """The four services, their workers and the gateway, running under supervisor.

    ``infra``: the session's FerretDB and RabbitMQ, or None for a system that runs its own.
    ``replicas``: instances of each service and copies of each worker (``REPLICAS``); one keeps a
    test's system lean, the restart tests need two. Instance k's ports are the first instance's
    plus ``REPLICA_PORT_STEP`` (10) times k - 1, as ``make run`` numbers them.
    """

    def __init__(self, base: Path, infra: Infra | None, *, replicas: int = 1, **environment: str) -> None:
        self.base = base
        self.infra = infra
        self.replicas = replicas
        self.ports = {name: free_port(replicas) for name in SERVICES}
        self.metrics_ports = {name: free_port(replicas) for name in SERVICES}
        self.worker_metrics_ports = {name: free_port(replicas) for name in SERVICES}
        self.gateway_port = free_port()
        self.gateway_tls_port = free_port()
        self.web_port = free_port()
        if infra is not None:
            self.mongodb_uri, self.rabbitmq_url = infra.mongodb_uri, infra.rabbitmq_url
            dependencies = {**infra.env, "MONGODB_URI": infra.mongodb_uri, "RABBITMQ_URL": infra.rabbitmq_url}
        else:
            mongodb_port, rabbitmq_port = free_port(), free_port()
            self.mongodb_uri = f"mongodb://127.0.0.1:{mongodb_port}/"
            self.rabbitmq_url = f"amqp://guest:guest@127.0.0.1:{rabbitmq_port}/%2F"
            dependencies = {
                **own_environment(),
                "MONGODB_PORT": str(mongodb_port),
                "RABBITMQ_PORT": str(rabbitmq_port),
                "RABBITMQ_DIST_PORT": str(free_port()),
                "TASKFLOW_RABBITMQ_NODE": f"taskflow-test-{uuid.uuid4().hex[:8]}@localhost",
            }
        self.env = {
            **dependencies,
            "TASKFLOW_VAR": str(base / "var"),
            "MONGODB_DB_PREFIX": "e2e_",
            "TASKFLOW_ENV": "test",
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_TLS_PORT": str(self.gateway_tls_port),
            "REPLICAS": str(replicas),
            "WEB_PORT": str(self.web_port),
            "WEB_CONCURRENCY": "2",
            **{variable: str(self.ports[name]) for name, variable in SERVICES.items()},
            **{f"{name.upper()}_METRICS_PORT": str(self.metrics_ports[name]) for name in SERVICES},
            **{f"{name.upper()}_WORKER_METRICS_PORT": str(self.worker_metrics_ports[name]) for name in SERVICES},
            **environment,
        }
        self.child: Child | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def log_dir(self) -> Path:
        """Where supervisor writes each process's output, as ``<program>.log`` (scripts/run)."""
        return Path(self.env["TASKFLOW_VAR"]) / "log"

    def service_url(self, name: str, instance: int = 1) -> str:
        """The address of one instance of a service, behind the gateway (for /readyz and /internal/)."""
        return f"http://127.0.0.1:{self.ports[name] + 10 * (instance - 1)}"

    def program(self, name: str, instance: int = 1) -> str:
        """supervisor's name of one instance of program ``name`` (``tasks``, ``tasks-worker``)."""
        return f"{name}:{name}-{instance}" if self.replicas > 1 else name

    def start(self, timeout: float = 180) -> System:
        """Run scripts/run and wait up to ``timeout`` seconds until every service is ready."""
        self.child = Child(["scripts/run"], env=self.env, log_path=self.base / "system.log")
        try:
            wait_for(self.ready, timeout=timeout, interval=0.5, what="all services ready")
        except (TimeoutError, RuntimeError) as error:
            logs = self.log_tails()
            self.stop()
            raise RuntimeError(f"{error}\n{logs}") from None
        except BaseException:
            self.stop()  # never leave a whole system running behind a failed fixture
            raise
        return self

    def log_tails(self, lines: int = 30) -> str:
        """The end of scripts/run's output (supervisor's own lines) and of every process's log."""
        tails = [f"--- scripts/run ---\n{self.child.log_tail(lines * 2) if self.child else ''}"]
        for log in sorted(self.log_dir.glob("*.log")):
            tails.append(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)

    def logs(self) -> str:
        """Everything every process of the system has written so far (supervisor's log files)."""
        return "\n".join(log.read_text(errors="replace") for log in sorted(self.log_dir.glob("*.log*")))

    def supervisorctl(self, *args: str) -> str:
        """Run scripts/supervisorctl against this system; its output (its exit status is not checked:
        supervisorctl exits non-zero when any program is not running)."""
        completed = subprocess.run([str(ROOT / "scripts/supervisorctl"), *args], env=self.env, cwd=ROOT,
                                   capture_output=True, text=True, timeout=60)
        return completed.stdout + completed.stderr

    def ready(self) -> bool:
        """True when every service's /readyz is 200 and the gateway serves the web client's page."""
        if self.child is not None and not self.child.running():
            raise RuntimeError("scripts/run exited")
        try:
            services_ready = all(
                requests.get(f"{self.service_url(name, instance)}/readyz", timeout=5).status_code == 200
                for name in SERVICES
                for instance in range(1, self.replicas + 1)
            )
            return services_ready and requests.get(f"{self.gateway_url}/", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            # A service's port accepts connections before its workers have loaded the app; on a
            # busy machine the first requests can wait longer than the timeout. Not ready yet.
            return False

    def stop(self) -> None:
        """Stop it as Ctrl-C would; supervisor stops its programs one after another, gracefully."""
        if self.child is not None:
            self.child.stop(timeout=180)


class SourceAddressAdapter(HTTPAdapter):
    """Connects from a given loopback address, so each test client is its own "client IP"."""

    def __init__(self, source_ip: str, **kwargs: Any) -> None:
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


class Client(requests.Session):
    """An HTTP client of one base URL, from its own 127.x.y.z address (per-client rate limits).

    ``client.get("/api/v1/tasks")`` requests ``<base_url>/api/v1/tasks``.
    """

    def __init__(self, base_url: str, *, source_ip: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        self.source_ip = source_ip or f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.mount("http://", SourceAddressAdapter(self.source_ip))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", 30)
        return super().request(method, self.base_url + url, *args, **kwargs)
