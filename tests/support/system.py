"""The whole TaskFlow system for end-to-end tests, started exactly as `make run` starts it
(scripts/run → honcho → the Procfile), on free ports, with state in a temporary directory and
the session's own FerretDB and RabbitMQ passed in as MONGODB_URI / RABBITMQ_URL."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .infra import Infra
from .processes import Child, free_port, wait_for

SERVICES = {"auth": "AUTH_PORT", "tasks": "TASKS_PORT", "admin": "ADMIN_PORT", "notify": "NOTIFY_PORT"}


class System:
    """The four services and the gateway, running under honcho."""

    def __init__(self, base: Path, infra: Infra, **environment: str) -> None:
        self.base = base
        self.infra = infra
        self.ports = {name: free_port() for name in SERVICES}
        self.worker_metrics_ports = {name: free_port() for name in SERVICES}
        self.gateway_port = free_port()
        self.env = {
            **infra.env,
            "TASKFLOW_VAR": str(base / "var"),
            "MONGODB_URI": infra.mongodb_uri,
            "RABBITMQ_URL": infra.rabbitmq_url,
            "MONGODB_DB_PREFIX": "e2e_",
            "TASKFLOW_ENV": "test",
            "GATEWAY_PORT": str(self.gateway_port),
            "WEB_CONCURRENCY": "2",
            "AUTH_URL": f"http://127.0.0.1:{self.ports['auth']}",
            "TASKS_URL": f"http://127.0.0.1:{self.ports['tasks']}",
            **{variable: str(self.ports[name]) for name, variable in SERVICES.items()},
            **{f"{name.upper()}_WORKER_METRICS_PORT": str(self.worker_metrics_ports[name]) for name in SERVICES},
            **environment,
        }
        self.child: Child | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def service_url(self, name: str) -> str:
        """A service's own address, behind the gateway (for /readyz, /metrics, /internal/)."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self) -> System:
        self.child = Child(["scripts/run"], env=self.env, log_path=self.base / "system.log")
        try:
            wait_for(self.ready, timeout=180, interval=0.5, what="all services ready")
        except (TimeoutError, RuntimeError) as error:
            log = self.child.log_tail()
            self.stop()
            raise RuntimeError(f"{error}\n--- system log ---\n{log}") from None
        except BaseException:
            self.stop()  # never leave a whole system running behind a failed fixture
            raise
        return self

    def ready(self) -> bool:
        """True when every service's /readyz is 200 and the gateway answers."""
        if self.child is not None and not self.child.running():
            raise RuntimeError("scripts/run exited")
        try:
            services_ready = all(
                requests.get(f"{self.service_url(name)}/readyz", timeout=5).status_code == 200 for name in SERVICES
            )
            return services_ready and requests.get(f"{self.gateway_url}/", timeout=5).status_code == 404
        except (requests.ConnectionError, requests.Timeout):
            # A service's port accepts connections before its workers have loaded the app; on a
            # busy machine the first requests can wait longer than the timeout. Not ready yet.
            return False

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


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
