"""Prometheus metrics on ports of their own, never on a service's API port (DESIGN §2, §3).

:func:`serve` runs prometheus-client's own HTTP server in a daemon thread: Prometheus text on any
path of its port. gunicorn's master serves :func:`all_workers` there (see
:mod:`taskflow_common.serving`), as prometheus-client's multi-process mode prescribes: a registry
of its own holding only the multi-process collector, in a process that records no metrics itself.
A worker process serves :func:`this_process`: its own metrics and those read from its database.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class _ThisProcess(Collector):
    """The default registry's metrics (everything this process recorded), as one collector."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def all_workers() -> CollectorRegistry:
    """Every gunicorn worker's samples, as they wrote them under ``PROMETHEUS_MULTIPROC_DIR``,
    aggregated at each scrape (workers that exited included, as multi-process mode counts them)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def this_process(collectors: Iterable[Collector] = ()) -> CollectorRegistry:
    """This process's metrics plus ``collectors``, which are read at each scrape (e.g. the outbox
    depth). A registry of its own: the default one would read each collector once more to learn its
    names when it is registered, and keep it for the rest of the process."""
    registry = CollectorRegistry()
    registry.register(_ThisProcess())
    for collector in collectors:
        registry.register(collector)
    return registry


def serve(port: int, registry: CollectorRegistry) -> None:
    """Serve ``registry`` on ``port`` of ``HOST`` (default 127.0.0.1; 0.0.0.0 in containers) from a
    daemon thread, in Prometheus text format 0.0.4.

    Raises:
        OSError: the port is taken.
    """
    start_http_server(port, addr=os.environ.get("HOST", "127.0.0.1"), registry=registry)
