"""How long each request of a service's Flask app takes, as the Prometheus histogram
``http_request_duration_seconds{method,route,status}`` (route is the URL rule's template).

The app serves no metrics itself (``GET /metrics`` on the API port is a 404): with
``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn sets it, see :mod:`taskflow_common.serving`) each worker
writes its samples to files there, and gunicorn's master serves them all on a port of its own
(:mod:`taskflow_common.exposition`).
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import Histogram

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
    """Time every request of ``app`` into :data:`REQUEST_DURATION`."""
    app.before_request(_start_timer)
    app.after_request(_observe)
