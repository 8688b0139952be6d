"""The gateway as a client sees it: routing, problem details, request ids, limits (issue 2)."""

from __future__ import annotations

import http.client
import re

import pytest
import requests

from tests.support.system import Client, System

pytestmark = pytest.mark.e2e

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PREFIXES = {
    "/api/v1/auth": "TaskFlow auth",
    "/api/v1/tasks": "TaskFlow tasks",
    "/api/v1/admin": "TaskFlow admin",
    "/api/v1/notifications": "TaskFlow notify",
}


@pytest.mark.parametrize(("prefix", "title"), PREFIXES.items())
def test_each_prefix_reaches_its_own_service(gateway: Client, prefix: str, title: str) -> None:
    response = gateway.get(f"{prefix}/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == title


@pytest.mark.parametrize(
    "path",
    ["/index.html", "/internal/users", "/healthz", "/readyz", "/metrics", "/api/v1/tasksfoo", "/api/v2/tasks", "/api/v1"],
)
def test_paths_outside_the_public_api_are_404_problem(gateway: Client, path: str) -> None:
    response = gateway.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404


@pytest.mark.parametrize(
    "raw_path", ["/api/v1/auth/../../internal/users", "/api/v1/auth/%2e%2e/%2e%2e/internal/users", "/api/v1/tasks/../../healthz"]
)
def test_dot_segments_cannot_escape_a_prefix(system: System, raw_path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", system.gateway_port, timeout=10)
    connection.request("GET", raw_path)
    response = connection.getresponse()
    assert response.status == 404
    assert response.getheader("Content-Type") == "application/problem+json"
    connection.close()


def test_a_request_id_is_generated(gateway: Client) -> None:
    response = gateway.get("/api/v1/tasks/openapi.json")
    assert UUID.match(response.headers["X-Request-ID"])


def test_a_request_id_is_passed_through_and_echoed(gateway: Client) -> None:
    response = gateway.get("/api/v1/tasks/openapi.json", headers={"X-Request-ID": "trace-me-42"})
    assert response.headers["X-Request-ID"] == "trace-me-42"
    assert list(response.raw.headers.getlist("X-Request-ID")) == ["trace-me-42"]


def test_a_request_id_is_returned_on_gateway_errors_too(gateway: Client) -> None:
    response = gateway.get("/nowhere", headers={"X-Request-ID": "lost-42"})
    assert response.headers["X-Request-ID"] == "lost-42"


def test_a_body_over_one_mebibyte_is_413_problem(gateway: Client) -> None:
    response = gateway.post(
        "/api/v1/tasks", data=b"{" + b" " * (1024 * 1024 + 10) + b"}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"


def test_bodies_nginx_keeps_on_disk_reach_the_service(gateway: Client) -> None:
    """A body larger than nginx's in-memory buffer goes through a temporary file; its worker
    processes must be able to write it (a 500 from the gateway otherwise)."""
    body = {"email": "big@example.com", "password": "p" * 500_000, "name": "Big"}
    response = gateway.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "password"


def test_trace_is_a_405_problem_listing_the_methods_passed_on(gateway: Client) -> None:
    response = gateway.request("TRACE", "/api/v1/notifications")
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 405
    assert "GET" in response.headers["Allow"] and "TRACE" not in response.headers["Allow"]
    assert response.headers["X-Request-ID"]


def test_a_service_405_keeps_its_own_allow_header(gateway: Client) -> None:
    response = gateway.put("/api/v1/notifications/read-all")
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/problem+json"
    assert list(response.raw.headers.getlist("Allow")) == [response.headers["Allow"]]
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("length", [5_000, 9_000])
def test_a_long_request_line_is_refused_as_a_problem_never_html(gateway: Client, length: int) -> None:
    response = gateway.get("/api/v1/admin/users", params={"q": "x" * length})
    assert response.status_code in {401, 414}  # reached the service (no token) or refused by the gateway
    assert response.headers["Content-Type"] == "application/problem+json"
    assert (response.status_code == 414) == (length > 8192)


@pytest.mark.parametrize("path", ["/verify-email.html", "/logo.gif", "/api/v1/x.jpg", "/assets/missing.js"])
def test_an_unrouted_path_is_a_problem_whatever_its_extension(gateway: Client, path: str) -> None:
    response = gateway.get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_an_oversized_header_or_cookie_is_refused_as_a_problem_never_html(gateway: Client) -> None:
    response = gateway.post("/api/v1/auth/login", json={}, headers={"Cookie": "taskflow_device=" + "A" * 9_000})
    assert response.status_code == 431
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 431


def test_cors_preflight_is_answered_by_the_gateway(gateway: Client) -> None:
    response = gateway.options(
        "/api/v1/tasks",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,if-match,idempotency-key,last-event-id",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    allowed = set(response.headers["Access-Control-Allow-Headers"].split(","))
    # a conditional change, a create safe to retry, a live feed resumed from another origin
    assert {"If-Match", "If-None-Match", "Idempotency-Key", "Last-Event-ID"} <= allowed


def test_cross_origin_responses_expose_the_contract_headers(gateway: Client) -> None:
    response = gateway.get("/api/v1/tasks/openapi.json", headers={"Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert {"ETag", "Location", "X-Request-ID"} <= set(response.headers["Access-Control-Expose-Headers"].split(","))


def test_same_origin_responses_carry_no_cors_headers(gateway: Client) -> None:
    response = gateway.get("/api/v1/tasks/openapi.json")
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("route", ["login", "register", "password", "refresh", "verify-email", "verify-email/resend"])
def test_a_credential_flood_from_one_client_is_429_with_retry_after(system: System, route: str) -> None:
    """Each of these costs auth a bcrypt check or guesses a secret: 30 a minute per client."""
    flooder = Client(system.gateway_url)
    bystander = Client(system.gateway_url)
    statuses = [flooder.post(f"/api/v1/auth/{route}", json={}).status_code for _ in range(40)]
    assert 429 in statuses
    limited = flooder.post(f"/api/v1/auth/{route}", json={})
    assert limited.status_code == 429
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1
    assert bystander.post(f"/api/v1/auth/{route}", json={}).status_code != 429


def test_readyz_reports_the_broker_without_leaving_service(system: System) -> None:
    """Issue 18, finding 7: with the broker stopped every service stays ready (writes keep their
    events in the outbox) and says the broker is down."""
    urls = {service: f"{system.service_url(service)}/readyz" for service in ("auth", "tasks", "admin", "notify")}
    assert {service: requests.get(url, timeout=10).status_code for service, url in urls.items()} == dict.fromkeys(urls, 200)
    system.infra.stop_broker()
    try:
        for url in urls.values():
            response = requests.get(url, timeout=10)
            assert response.status_code == 200
            assert response.json()["checks"]["rabbitmq"] != "ok"
            assert response.json()["checks"]["mongodb"] == "ok"
    finally:
        system.infra.start_broker()
    for url in urls.values():
        assert requests.get(url, timeout=10).json()["checks"]["rabbitmq"] == "ok"
