"""Traces, metrics and logs of the running system (issue 8)."""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.accounts import sign_in, sign_up
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.otlp import OtlpReceiver
from tests.support.processes import ROOT, Child, free_port, wait_for
from tests.support.system import Client, System

pytestmark = pytest.mark.e2e
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP SpanKind numbers


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def test_one_registration_is_one_trace_across_http_mongodb_and_rabbitmq(gateway: Client, otlp: OtlpReceiver) -> None:
    trace_id, header = traceparent()
    email = f"traced-{uuid.uuid4().hex[:8]}@example.com"
    response = gateway.post(
        "/api/v1/auth/register", json={"email": email, "password": "a traced passphrase", "name": "T"},
        headers={"traceparent": header},
    )
    assert response.status_code == 201
    for expected in (
        lambda span: span.kind == CONSUMER and span.service == "taskflow-admin",
        lambda span: span.kind == PRODUCER,
        lambda span: span.kind == SERVER and span.service == "taskflow-auth",
        lambda span: span.attributes.get("db.system") == "mongodb",
    ):
        otlp.wait_for(lambda span, e=expected: span.trace_id == trace_id and e(span))
    spans = [span for span in otlp.spans if span.trace_id == trace_id]
    server = [span for span in spans if span.kind == SERVER and span.service == "taskflow-auth"]
    assert any(span.name == "POST /api/v1/auth/register" for span in server)
    assert any(span.attributes.get("db.system") == "mongodb" and span.service == "taskflow-auth" for span in spans)
    assert any(span.kind == PRODUCER and span.name == "user.registered publish" for span in spans)
    assert any(span.kind == CONSUMER and span.service == "taskflow-admin" for span in spans)


def test_one_task_write_is_one_trace_through_tasks_the_publish_and_notify(gateway: Client, otlp: OtlpReceiver) -> None:
    owner = sign_up(gateway)
    trace_id, header = traceparent()
    created = gateway.post("/api/v1/tasks", json={"title": "Traced"}, headers={**owner.headers, "traceparent": header})
    assert created.status_code == 201
    for expected in (
        lambda span: span.kind == SERVER and span.service == "taskflow-tasks" and span.name == "POST /api/v1/tasks",
        lambda span: span.service == "taskflow-tasks" and span.attributes.get("db.system") == "mongodb",
        lambda span: span.kind == PRODUCER and span.name == "task.created publish",
        lambda span: span.kind == CONSUMER and span.service == "taskflow-notify",
        lambda span: span.kind == CONSUMER and span.service == "taskflow-admin",
    ):
        otlp.wait_for(lambda span, e=expected: span.trace_id == trace_id and e(span))


def test_admin_calls_to_auth_share_the_callers_trace(gateway: Client, otlp: OtlpReceiver) -> None:
    root = sign_in(gateway, ADMIN_EMAIL, ADMIN_PASSWORD)
    user = sign_up(gateway)
    trace_id, header = traceparent()
    response = gateway.patch(f"/api/v1/admin/users/{user.id}", json={"role": "user"}, headers={**root.headers, "traceparent": header})
    assert response.status_code == 200
    for service, kind in (("taskflow-admin", SERVER), ("taskflow-admin", CLIENT), ("taskflow-auth", SERVER)):
        otlp.wait_for(lambda span, s=service, k=kind: span.trace_id == trace_id and span.service == s and span.kind == k)
    internal = [span for span in otlp.spans if span.trace_id == trace_id and span.service == "taskflow-auth" and span.kind == SERVER]
    assert any(span.name == "PATCH /internal/users/<user_id>" for span in internal)


def test_every_gunicorn_worker_exports_also_with_preload(system: System, otlp: OtlpReceiver, tmp_path: Path) -> None:
    port = free_port()
    env = {**system.env, "AUTH_PORT": str(port), "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "1",
           "OTEL_SERVICE_NAME": f"preload-{port}", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    server = Child(
        [str(ROOT / ".venv/bin/gunicorn"), "-c", "services/auth/gunicorn.conf.py", "--preload"],
        env=env, log_path=tmp_path / "preload.log",
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60, what="preloaded auth")
        for _ in range(60):
            requests.get(f"http://127.0.0.1:{port}/api/v1/auth/jwks.json", headers={"Connection": "close"}, timeout=10)
        spans = otlp.wait_for(lambda span: span.service == f"preload-{port}", count=60)
    finally:
        server.stop()
    assert len({span.pid for span in spans}) >= 2


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _count(metrics_text: str, route: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "http_request_duration_seconds":
            total += sum(s.value for s in family.samples if s.name.endswith("_count") and s.labels["route"] == route)
    return total


@pytest.mark.parametrize(("service", "prefix"), [("auth", "auth"), ("tasks", "tasks"), ("admin", "admin"), ("notify", "notifications")])
def test_the_metrics_port_counts_requests_across_workers(system: System, service: str, prefix: str) -> None:
    base = system.service_url(service)
    metrics = f"http://127.0.0.1:{system.metrics_ports[service]}/metrics"
    route = f"/api/v1/{prefix}/openapi.json"
    before = _count(requests.get(metrics, timeout=10).text, route)
    for _ in range(7):
        requests.get(f"{base}{route}", headers={"Connection": "close"}, timeout=10)
    assert _count(requests.get(metrics, timeout=10).text, route) == before + 7


@pytest.mark.parametrize("service", ["auth", "tasks", "admin", "notify"])
def test_the_api_port_serves_no_metrics(system: System, service: str) -> None:
    response = requests.get(f"{system.service_url(service)}/metrics", timeout=10)
    assert response.status_code == 404
    assert "http_request_duration_seconds" not in response.text


@pytest.mark.parametrize("service", ["auth", "tasks", "admin", "notify"])
def test_workers_serve_their_metrics(system: System, service: str) -> None:
    text = requests.get(f"http://127.0.0.1:{system.worker_metrics_ports[service]}/metrics", timeout=10).text
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"events_consumed", "events_handler_duration_seconds", "outbox_relayed_events", "events_published"} <= families


@pytest.mark.parametrize("service", ["auth", "tasks", "notify"])
def test_workers_report_their_outbox_backlog(system: System, service: str) -> None:
    text = requests.get(f"http://127.0.0.1:{system.worker_metrics_ports[service]}/metrics", timeout=10).text
    samples = {sample.name: sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples}
    assert samples["outbox_pending"] >= 0 and samples["outbox_oldest_pending_age_seconds"] >= 0


def _log_lines(system: System) -> list[dict]:
    lines = []
    for raw in system.logs().splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return lines


def test_log_lines_are_json_with_the_request_and_trace_ids(gateway: Client, system: System) -> None:
    request_id = f"log-check-{uuid.uuid4().hex[:8]}"
    trace_id, header = traceparent()
    gateway.get("/api/v1/auth/me", headers={"X-Request-ID": request_id, "traceparent": header})
    wait_for(lambda: any(line.get("request_id") == request_id and line.get("service") == "auth" for line in _log_lines(system)),
             timeout=15, what="the access log line")
    [line] = [line for line in _log_lines(system) if line.get("request_id") == request_id and line.get("service") == "auth"]
    assert line["status"] == 401 and line["route"] == "/api/v1/auth/me" and line["level"] == "INFO"
    assert line["trace_id"] == trace_id and len(line["span_id"]) == 16
    assert line["time"].endswith("Z")


def test_a_login_never_logs_the_password(gateway: Client, system: System) -> None:
    password = f"never-logged-{uuid.uuid4().hex}"
    user = sign_up(gateway, password=password)
    gateway.post("/api/v1/auth/login", json={"email": user.email, "password": password})
    gateway.post("/api/v1/auth/login", json={"email": user.email, "password": password + "-wrong"})
    gateway.post("/api/v1/auth/password", json={"current_password": password, "new_password": password + "-2"}, headers=user.headers)
    log = system.logs()
    assert password not in log
    assert user.access_token not in log and user.refresh_token not in log
