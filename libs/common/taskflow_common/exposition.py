"""Prometheus metrics on a port of their own, never on a service's API port (DESIGN §2).

:func:`serve` runs prometheus-client's own HTTP server in a daemon thread: Prometheus text on any
path of its port. gunicorn's master serves :func:`all_workers` there (see
:mod:`taskflow_common.serving`), as prometheus-client's multi-process mode prescribes: a registry
of its own holding only the multi-process collector, in a process that records no metrics itself.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, multiprocess, start_http_server


def all_workers() -> CollectorRegistry:
    """Every gunicorn worker's samples, as they wrote them under ``PROMETHEUS_MULTIPROC_DIR``,
    aggregated at each scrape (workers that exited included, as multi-process mode counts them)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve(port: int, registry: CollectorRegistry) -> None:
    """Serve ``registry`` on ``port`` of ``HOST`` (default 127.0.0.1; 0.0.0.0 in containers) from a
    daemon thread, in Prometheus text format 0.0.4.

    Raises:
        OSError: the port is taken.
    """
    start_http_server(port, addr=os.environ.get("HOST", "127.0.0.1"), registry=registry)
