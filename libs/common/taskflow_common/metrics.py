"""Prometheus metrics on ``GET /metrics``, correct under gunicorn's many worker processes.

With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn sets it, see :mod:`taskflow_common.serving`)
every worker writes its samples to files there and ``/metrics`` aggregates them all; without it
(a single process, e.g. tests) the default registry is served.
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

from . import exposition

REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UNMATCHED_ROUTE = "<unmatched>"


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        REQUEST_DURATION.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - started)
    return response


def install(app: Flask) -> None:
    """Time every request of ``app`` and serve ``GET /metrics`` (Prometheus text format 0.0.4)."""
    multiple_processes = "PROMETHEUS_MULTIPROC_DIR" in os.environ
    registry = exposition.all_workers() if multiple_processes else exposition.this_process()
    blueprint = Blueprint("metrics", __name__)

    @blueprint.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(blueprint)
