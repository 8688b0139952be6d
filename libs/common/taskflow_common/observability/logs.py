"""Logs as one JSON object per line on stdout (twelve-factor), for every process.

Each line has ``time``, ``level``, ``service``, ``logger``, ``message``, and, when known,
``request_id``, ``trace_id`` and ``span_id``, so one request's lines can be found and opened as a
trace. The access log is written in the same format by the app (see :func:`log_requests`).
Secrets never reach a line: request bodies and headers are never logged, and any field whose
name says password, token, secret or authorization is masked as a last defence.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

SENSITIVE = ("password", "token", "secret", "authorization")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
access = logging.getLogger("taskflow.access")


class ContextFilter(logging.Filter):
    """Adds the service, the request id and the current trace and span ids; masks secrets."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        if has_request_context() and "request_id" in g:
            record.request_id = g.request_id
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        for key in list(record.__dict__):
            if key not in _RESERVED and any(word in key.lower() for word in SENSITIVE):
                record.__dict__[key] = "[redacted]"
        return True


class _Formatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def formatter() -> logging.Formatter:
    """The JSON formatter every TaskFlow log line goes through."""
    return _Formatter(
        "%(asctime)s %(levelname)s %(service)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of this process to stdout as JSON, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter())
    handler.addFilter(ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pika reports every failed connection attempt as an error with a traceback; the callers
    # (readiness probes, reconnect loops) report the outcome themselves.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


def _started() -> None:
    g.access_started = time.perf_counter()


def _finished(response: Response) -> Response:
    started = g.get("access_started")
    if started is not None and request.path not in ("/healthz", "/readyz"):
        fields: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "route": request.url_rule.rule if request.url_rule else None,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "client": request.remote_addr,
        }
        access.info("%s %s %s", request.method, request.path, response.status_code, extra=fields)
    return response


def log_requests(app: Flask) -> None:
    """One access-log line per request of ``app`` (probes excepted), no query string."""
    app.before_request(_started)
    app.after_request(_finished)
