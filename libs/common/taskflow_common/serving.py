"""Gunicorn settings shared by every service; each ``services/<name>/gunicorn.conf.py`` calls
:func:`gunicorn_settings` and adds only its name, app and port.

Environment: ``HOST`` (default 127.0.0.1; 0.0.0.0 in containers), ``<SERVICE>_PORT``,
``WEB_CONCURRENCY`` (worker processes, default 2), ``GUNICORN_WORKER_CLASS`` (default gthread),
``GUNICORN_THREADS`` (per worker, default 4), ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _reset_metrics_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    Path(directory).mkdir(parents=True, exist_ok=True)


def gunicorn_settings(*, service: str, app: str, default_port: int) -> dict[str, Any]:
    """Module-level settings for a gunicorn config file.

    Args:
        service: the service's name; ``<SERVICE>_PORT`` overrides ``default_port``.
        app: the WSGI app factory call, e.g. ``"taskflow_tasks:create_app()"``.
        default_port: the port of DESIGN §2.

    Returns:
        a dict of gunicorn setting names to values, including the ``on_starting`` and
        ``child_exit`` hooks that keep multi-process Prometheus metrics correct.
    """
    port = int(os.environ.get(f"{service.upper()}_PORT", default_port))
    # Each copy of the system (make run, make test) keeps its samples apart: the port tells them apart.
    metrics_dir = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", str(Path(tempfile.gettempdir()) / f"taskflow-metrics-{service}-{port}")
    )

    def on_starting(server: Any) -> None:
        _reset_metrics_dir(metrics_dir)

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    return {
        "wsgi_app": app,
        "bind": f"{os.environ.get('HOST', '127.0.0.1')}:{port}",
        "proc_name": f"taskflow-{service}",
        "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
        "worker_class": os.environ.get("GUNICORN_WORKER_CLASS", "gthread"),
        "threads": int(os.environ.get("GUNICORN_THREADS", "4")),
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        # gunicorn's control socket lives at one path per user; four services would fight over it.
        "control_socket_disable": True,
        "accesslog": "-",
        "errorlog": "-",
        "on_starting": on_starting,
        "child_exit": child_exit,
    }
