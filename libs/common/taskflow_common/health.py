"""Liveness, readiness and the wait-until-ready command.

``GET /healthz`` answers 200 while the process serves requests. ``GET /readyz`` runs every
dependency check for real (a ping of the service's database, an AMQP handshake with the broker)
and answers 200 while the checks serving HTTP needs pass, otherwise 503 problem details naming
each failed one (DESIGN §3). The broker is not one of them: while it is down, writes keep their
events in the outbox, so a broker outage must not take every pod out of its Service; its state is
in the body and in the gauge ``taskflow_dependency_up{dependency}``, which an alert watches.
``python -m taskflow_common.health --wait SECONDS`` blocks until MongoDB and RabbitMQ answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pika
from flask import Blueprint, Response, jsonify
from prometheus_client import Gauge

from .mongo import Mongo
from .problems import ServiceUnavailable
from .settings import ServiceSettings


DEPENDENCY_UP = Gauge(
    "taskflow_dependency_up",
    "1 when the dependency answered this service's last readiness check, else 0.",
    ["dependency"],
    multiprocess_mode="mostrecent",
)


@dataclass(frozen=True)
class Check:
    """A named readiness probe: ``probe()`` returns when the dependency answers, raises otherwise."""

    name: str
    probe: Callable[[], None]

    def run(self) -> str | None:
        """None when the dependency answers, else a one-line reason."""
        try:
            self.probe()
        except Exception as error:  # noqa: BLE001 (a probe reports any failure as "not ready")
            return f"{type(error).__name__}: {error}".splitlines()[0][:200] or type(error).__name__
        return None


def mongodb_check(mongo: Mongo) -> Check:
    """The service's database answers a ``ping``."""
    return Check("mongodb", mongo.ping)


def rabbitmq_check(url: str, timeout_seconds: float) -> Check:
    """The broker completes an AMQP handshake at ``url`` within ``timeout_seconds``."""

    def probe() -> None:
        parameters = pika.URLParameters(url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = timeout_seconds
        parameters.stack_timeout = timeout_seconds
        parameters.blocked_connection_timeout = timeout_seconds
        pika.BlockingConnection(parameters).close()

    return Check("rabbitmq", probe)


def blueprint(required: Sequence[Check], reported: Sequence[Check] = ()) -> Blueprint:
    """``/healthz`` and ``/readyz`` for a service that is ready while ``required`` pass;
    ``reported`` checks are run, reported and measured, but do not make it unready."""
    health = Blueprint("health", __name__)
    names = {check.name for check in required}

    @health.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @health.get("/readyz")
    def readyz() -> Response:
        failures = {check.name: check.run() for check in (*required, *reported)}
        for name, reason in failures.items():
            DEPENDENCY_UP.labels(name).set(0 if reason else 1)
        report = {name: reason or "ok" for name, reason in failures.items()}
        failed = [name for name, reason in failures.items() if reason and name in names]
        if failed:
            raise ServiceUnavailable(f"Not ready: {', '.join(failed)}.", extensions={"checks": report})
        return jsonify(status="ready", checks=report)

    return health


def wait_until_ready(checks: Sequence[Check], timeout_seconds: float, interval_seconds: float = 0.5) -> dict[str, str | None]:
    """Run ``checks`` until all pass or ``timeout_seconds`` elapse; return the last failures (empty when ready)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        failures = {check.name: reason for check in checks if (reason := check.run())}
        if not failures or time.monotonic() >= deadline:
            return failures
        time.sleep(interval_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wait until MONGODB_URI and RABBITMQ_URL answer.")
    parser.add_argument("--wait", type=float, default=60, metavar="SECONDS")
    args = parser.parse_args(argv)
    settings = ServiceSettings.load()
    mongo = Mongo(settings.mongodb_uri, "admin", app_name="taskflow-wait", timeout_seconds=1)
    failures = wait_until_ready(
        [mongodb_check(mongo), rabbitmq_check(settings.rabbitmq_url, settings.dependency_timeout_seconds)], args.wait
    )
    for name, reason in failures.items():
        print(f"{name} not ready after {args.wait:g}s: {reason}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
