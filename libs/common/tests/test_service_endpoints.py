"""Health, readiness and metrics endpoints every service serves (DESIGN §3)."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import free_port


def test_healthz_is_200(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_is_200_when_database_and_broker_answer(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"mongodb": "ok", "rabbitmq": "ok"}


def test_readyz_is_503_naming_the_broker_when_it_does_not_answer(make_app) -> None:
    client = make_app(rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.json["checks"]["mongodb"] == "ok"
    assert response.json["checks"]["rabbitmq"] != "ok"
    assert "rabbitmq" in response.json["detail"]


def test_readyz_is_503_naming_the_database_when_it_does_not_answer(make_app) -> None:
    client = make_app(mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["mongodb"] != "ok"
    assert response.json["checks"]["rabbitmq"] == "ok"


def _request_count(client: FlaskClient, route: str, status: str) -> float:
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    for family in families:
        if family.name == "http_request_duration_seconds":
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_count") and labels["route"] == route and labels["status"] == status:
                    return sample.value
    return 0.0


def test_metrics_count_requests_by_route_template(client: FlaskClient) -> None:
    before = _request_count(client, "/api/v1/sample/public", "200")
    for _ in range(3):
        client.get("/api/v1/sample/public")
    client.get("/api/v1/sample/items/not-a-route")
    assert _request_count(client, "/api/v1/sample/public", "200") == before + 3
    assert _request_count(client, "<unmatched>", "404") >= 1
