"""Gunicorn settings shared by every service; each ``services/<name>/gunicorn.conf.py`` calls
:func:`gunicorn_settings` and adds only its name, settings class, app and port.

Environment: ``HOST`` (default 127.0.0.1; 0.0.0.0 in containers), ``<SERVICE>_PORT``,
``WEB_CONCURRENCY`` (worker processes, default 2), ``GUNICORN_WORKER_CLASS`` (default: the
service's own, see :func:`gunicorn_settings`), ``GUNICORN_THREADS`` (per gthread worker, default 4),
``METRICS_PORT`` (where the master serves its workers' Prometheus metrics; none when unset),
``PROMETHEUS_MULTIPROC_DIR``, ``LOG_LEVEL``, ``TASKFLOW_ENV``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_WORKER_CLASS = "gevent"
"""The worker class of a service that mostly waits on FerretDB, RabbitMQ and the other services:
it served ``GET /tasks/{id}`` 1.4 to 2.3 times as fast as gthread in every run (docs/benchmarks.md, B2)."""


def _reset_metrics_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    Path(directory).mkdir(parents=True, exist_ok=True)


def _serving_metrics(port: int) -> Callable[[Any], None]:
    """gunicorn's ``when_ready`` hook: the master serves every worker's metrics on ``port``. It
    outlives the workers it forks and records no samples of its own, so each scrape sees them all,
    none twice, and never reaches the API port."""

    def when_ready(server: Any) -> None:
        from . import exposition

        exposition.serve(port, exposition.all_workers())

    return when_ready


GRACEFUL_TIMEOUT_SECONDS = 20
"""How long a worker asked to stop (SIGTERM) may finish its requests before gunicorn kills it."""

_stopping = False


def stopping() -> bool:
    """Whether this gunicorn worker was asked to stop (SIGTERM: a restart, a scale-down, a
    deploy). A response that would run on for longer than :data:`GRACEFUL_TIMEOUT_SECONDS` (a
    Server-Sent Events stream) ends when this turns true, so the worker exits as soon as its other
    requests are done and the client reconnects elsewhere, instead of being cut at the deadline."""
    return _stopping


def _post_worker_init(worker: Any) -> None:
    """Note SIGTERM for :func:`stopping`, then let gunicorn's own handler (which stops accepting
    and waits for the requests in hand) run as before."""
    graceful = signal.getsignal(signal.SIGTERM)

    def on_term(number: int, frame: Any) -> None:
        global _stopping
        _stopping = True
        if callable(graceful):
            graceful(number, frame)

    signal.signal(signal.SIGTERM, on_term)


def gunicorn_settings(
    *,
    service: str,
    app: str,
    default_port: int,
    worker_class: str = DEFAULT_WORKER_CLASS,
    settings: str | None = None,
) -> dict[str, Any]:
    """Module-level settings for a gunicorn config file.

    Args:
        service: the service's name; ``<SERVICE>_PORT`` overrides ``default_port``.
        app: the WSGI app factory call, e.g. ``"taskflow_tasks:create_app()"``.
        default_port: the port of DESIGN §2.
        worker_class: the service's gunicorn worker class unless ``GUNICORN_WORKER_CLASS`` names
            another: ``gevent`` (the default) or, for a service whose requests keep a core busy
            (auth's bcrypt, ~0.3 s, would stall every other request of a gevent worker), ``gthread``.
        settings: the service's settings class as ``"module:Class"``, loaded once when gunicorn's
            master reads its config, before any worker starts, in a child process: imported in the
            master, the service would register its metrics there and import what gevent patches
            only in the workers.

    Returns:
        a dict of gunicorn setting names to values, including the ``post_fork`` hook that sets up
        each worker's logs and traces, the ``post_worker_init`` hook behind :func:`stopping`,
        the ``child_exit`` hook that keeps multi-process
        Prometheus metrics correct and, with ``METRICS_PORT`` set, the ``when_ready`` hook that
        serves those metrics there.

    Raises:
        SystemExit: ``settings`` refuses the environment; gunicorn lets it end the master with the
            one-line message of :class:`~taskflow_common.settings.InvalidSettings`, where each
            worker would fail and be forked again.
    """
    if settings is not None:
        # Without the metrics directory: the check's own metrics are nobody's samples.
        environment = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
        checked = subprocess.run([sys.executable, "-m", "taskflow_common.settings", settings],
                                 env=environment, capture_output=True, text=True)
        if checked.returncode != 0:
            raise SystemExit(checked.stderr.strip())
    port = int(os.environ.get(f"{service.upper()}_PORT", default_port))
    metrics_port = os.environ.get("METRICS_PORT")
    log_level = os.environ.get("LOG_LEVEL", "INFO").upper()
    # Each copy of the system (make run, make test) keeps its samples apart: the port tells them apart.
    metrics_dir = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", str(Path(tempfile.gettempdir()) / f"taskflow-metrics-{service}-{port}")
    )

    # Emptied when the configuration is read, before the app is imported (also with --preload):
    # a previous run's files would add stale samples.
    _reset_metrics_dir(metrics_dir)

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    worker_class = os.environ.get("GUNICORN_WORKER_CLASS", worker_class)

    def post_fork(server: Any, worker: Any) -> None:
        if type(worker).__module__ == "gunicorn.workers.ggevent":
            # gunicorn's gevent worker (also when chosen with -k) patches the standard library only
            # after this hook; patched now, the threads started below (the span exporter's) are
            # greenlets like the rest.
            from gevent import monkey

            monkey.patch_all()
        # After the fork, also with --preload: a tracer provider made in the master exports nothing.
        from .observability import setup_process

        setup_process(service, environment=os.environ.get("TASKFLOW_ENV", "development"), log_level=log_level)

    return {
        "wsgi_app": app,
        "bind": f"{os.environ.get('HOST', '127.0.0.1')}:{port}",
        "proc_name": f"taskflow-{service}",
        "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
        "worker_class": worker_class,
        "threads": int(os.environ.get("GUNICORN_THREADS", "4")),
        "timeout": 30,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "post_worker_init": _post_worker_init,
        "keepalive": 5,
        # The gateway bounds the request line (414 as problem details); gunicorn's own 4094-byte
        # limit would answer a longer line the gateway admitted with an HTML 414 (0: up to 1 MiB).
        "limit_request_line": 0,
        # gunicorn's control socket lives at one path per user; four services would fight over it.
        "control_socket_disable": True,
        # The app writes the access log itself, as JSON with the route template and ids.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": log_level.lower(),
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "taskflow_common.observability.logs.formatter"}},
            "filters": {"context": {"()": "taskflow_common.observability.logs.ContextFilter", "service": service}},
            "handlers": {
                "stdout": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stdout",
                    "formatter": "json",
                    "filters": ["context"],
                }
            },
            "root": {"handlers": ["stdout"], "level": log_level},
            "loggers": {
                "gunicorn.error": {"handlers": ["stdout"], "level": log_level, "propagate": False},
                "gunicorn.access": {"handlers": [], "level": log_level, "propagate": False},
            },
        },
        "post_fork": post_fork,
        "child_exit": child_exit,
        **({"when_ready": _serving_metrics(int(metrics_port))} if metrics_port else {}),
    }
