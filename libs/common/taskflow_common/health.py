"""Liveness, readiness and the wait-until-ready command.

``GET /healthz`` answers 200 while the process serves requests. ``GET /readyz`` answers 200 only
when every dependency check passes (the service's database and the broker, for real: a ping and
an AMQP handshake), otherwise 503 problem details naming each failed check (DESIGN §3).
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

from .mongo import Mongo
from .problems import ServiceUnavailable
from .settings import ServiceSettings


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


def blueprint(checks: Sequence[Check]) -> Blueprint:
    """``/healthz`` and ``/readyz`` for a service whose readiness is ``checks``."""
    health = Blueprint("health", __name__)

    @health.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @health.get("/readyz")
    def readyz() -> Response:
        failures = {check.name: check.run() for check in checks}
        report = {name: reason or "ok" for name, reason in failures.items()}
        if any(failures.values()):
            failed = ", ".join(name for name, reason in failures.items() if reason)
            raise ServiceUnavailable(f"Not ready: {failed}.", extensions={"checks": report})
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
