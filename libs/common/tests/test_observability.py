"""Logs, tracing set-up and error tracking of a process (issue 8)."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask
from opentelemetry import trace
from taskflow_common.observability.logs import ContextFilter, formatter

from tests.support.processes import ROOT, free_port


def capture(logger_name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter())
    handler.addFilter(ContextFilter("sample"))
    logger = logging.getLogger(logger_name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_log_line_is_one_json_object_with_service_level_and_time() -> None:
    logger, stream = capture("test.plain")
    logger.warning("disk %s is full", "d1")
    line = json.loads(stream.getvalue())
    assert line["message"] == "disk d1 is full"
    assert line["level"] == "WARNING" and line["service"] == "sample" and line["logger"] == "test.plain"
    assert line["time"].endswith("Z")


def test_lines_carry_the_request_id_and_the_current_trace(client, spans) -> None:
    logger, stream = capture("test.request")
    app: Flask = client.application
    with app.test_request_context(headers={"X-Request-ID": "req-7"}):
        app.preprocess_request()
        with trace.get_tracer("test").start_as_current_span("work") as span:
            logger.info("inside")
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "req-7"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")


def test_fields_named_like_secrets_are_masked() -> None:
    logger, stream = capture("test.secrets")
    logger.info("login", extra={"password": "hunter2", "refresh_token": "abc", "Authorization": "Bearer x", "email": "a@b.c"})
    line = json.loads(stream.getvalue())
    assert line["password"] == line["refresh_token"] == line["Authorization"] == "[redacted]"
    assert line["email"] == "a@b.c"
    assert "hunter2" not in stream.getvalue()


def test_each_request_writes_one_access_line_without_the_query_string(client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="taskflow.access"):
        client.get("/api/v1/sample/public?token=secret-in-query", headers={"X-Request-ID": "acc-1"})
        client.get("/healthz")
    [record] = [record for record in caplog.records if record.name == "taskflow.access"]
    assert (record.method, record.path, record.route, record.status) == ("GET", "/api/v1/sample/public", "/api/v1/sample/public", 200)
    assert "secret-in-query" not in record.getMessage() and "secret-in-query" not in str(record.__dict__)


def run_python(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "SENTRY_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env={**env, **environment}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )


def test_without_an_endpoint_nothing_is_exported_but_trace_ids_exist() -> None:
    result = run_python("""
        from opentelemetry import trace
        from taskflow_common.observability.tracing import configure_tracing
        provider = configure_tracing("sample", environment="test")
        with trace.get_tracer("t").start_as_current_span("s") as span:
            context = span.get_span_context()
        print(len(provider._active_span_processor._span_processors), context.is_valid, span.is_recording())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True", "False"]


def test_the_resource_names_the_service_version_environment_and_process() -> None:
    result = run_python("""
        import json, os
        from taskflow_common.observability.tracing import resource
        attributes = dict(resource("tasks", environment="production").attributes)
        print(json.dumps([attributes["service.name"], attributes["deployment.environment.name"],
                          attributes["process.pid"] == os.getpid(), bool(attributes["service.version"])]))
    """)
    assert json.loads(result.stdout) == ["taskflow-tasks", "production", True, True]


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """An envelope as sentry-sdk sent it: gzip, or brotli when the brotli package is installed."""
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # present exactly when sentry-sdk chose it

        return brotli.decompress(body)
    return body


class _SentryInbox:
    """A local HTTP endpoint standing in for sentry.io (outside the machine)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                inbox.bodies.append(_decoded(body, self.headers.get("Content-Encoding")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.dsn = f"http://publickey@127.0.0.1:{self.server.server_port}/1"


def test_sentry_reports_unhandled_errors_only_with_a_dsn() -> None:
    inbox = _SentryInbox()
    code = """
        import sentry_sdk
        from flask import Flask
        from taskflow_common.observability.errors import configure_error_tracking
        print(configure_error_tracking("sample", environment="test"))
        app = Flask("sample")
        @app.get("/boom")
        def boom():
            raise RuntimeError("reported to sentry")
        app.test_client().get("/boom")
        sentry_sdk.flush(5)
    """
    without = run_python(code)
    assert without.stdout.splitlines()[0] == "False" and inbox.bodies == []
    with_dsn = run_python(code, SENTRY_DSN=inbox.dsn)
    assert with_dsn.stdout.splitlines()[0] == "True", with_dsn.stderr
    assert any(b"reported to sentry" in body for body in inbox.bodies)
    inbox.server.shutdown()
    inbox.server.server_close()
