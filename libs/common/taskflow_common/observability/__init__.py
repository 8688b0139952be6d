"""Traces, logs and error reports of a TaskFlow process (metrics: :mod:`taskflow_common.metrics`).

:func:`setup_process` runs once in every process that serves or works: after gunicorn forks a
worker (its ``post_fork`` hook; a tracer provider made before ``fork()`` exports nothing from the
workers, also with ``--preload``), and at the start of each service's worker and CLI.
"""

from __future__ import annotations

import os

from .errors import configure_error_tracking
from .logs import configure_logging
from .tracing import configure_tracing

_configured_pid: int | None = None


def setup_process(service: str, *, environment: str, log_level: str = "INFO") -> None:
    """JSON logs, tracing and (with ``SENTRY_DSN``) error tracking for this process, once."""
    global _configured_pid
    if _configured_pid == os.getpid():
        return
    _configured_pid = os.getpid()
    configure_logging(service, log_level)
    configure_tracing(service, environment=environment)
    configure_error_tracking(service, environment=environment)
