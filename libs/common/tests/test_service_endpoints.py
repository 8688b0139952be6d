"""Health and readiness endpoints every service serves, and its request metrics, which it
serves on a port of its own, never on its API (DESIGN §2, §3)."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from taskflow_common import exposition

from tests.support.processes import free_port


def test_healthz_is_200(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_is_200_when_database_and_broker_answer(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"mongodb": "ok", "rabbitmq": "ok"}


def _dependency_up(dependency: str) -> float | None:
    families = text_string_to_metric_families(generate_latest(exposition.this_process()).decode())
    for family in families:
        if family.name == "taskflow_dependency_up":
            for sample in family.samples:
                if sample.labels["dependency"] == dependency:
                    return sample.value
    return None


def test_readyz_stays_200_without_the_broker_and_reports_it(make_app) -> None:
    """Issue 18, finding 7: writes keep their events in the outbox while the broker is down, so a
    broker outage must not take every pod out of its Service; it shows in the body and a gauge."""
    client = make_app(rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F").test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["mongodb"] == "ok"
    assert response.json["checks"]["rabbitmq"] != "ok"
    assert (_dependency_up("rabbitmq"), _dependency_up("mongodb")) == (0.0, 1.0)


def test_readyz_is_503_naming_the_database_when_it_does_not_answer(make_app) -> None:
    client = make_app(mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["mongodb"] != "ok"
    assert response.json["checks"]["rabbitmq"] == "ok"
    assert "mongodb" in response.json["detail"] and _dependency_up("mongodb") == 0.0


def _request_count(route: str, status: str) -> float:
    """What this process's metrics port would serve (the app runs in the test process)."""
    families = text_string_to_metric_families(generate_latest(exposition.this_process()).decode())
    for family in families:
        if family.name == "http_request_duration_seconds":
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_count") and labels["route"] == route and labels["status"] == status:
                    return sample.value
    return 0.0


def test_metrics_count_requests_by_route_template(client: FlaskClient) -> None:
    public, unmatched = _request_count("/api/v1/sample/public", "200"), _request_count("<unmatched>", "404")
    for _ in range(3):
        client.get("/api/v1/sample/public")
    client.get("/api/v1/sample/nowhere")
    assert _request_count("/api/v1/sample/public", "200") == public + 3
    assert _request_count("<unmatched>", "404") == unmatched + 1


def test_the_api_serves_no_metrics(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
