"""What a client gets for good and bad requests: the shared part of DESIGN §3."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.support.tokens import Issuer

PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_body_reaches_the_view_with_the_principal(client: FlaskClient, issuer: Issuer) -> None:
    response = client.post("/api/v1/sample/items", json={"title": "write tests"}, headers=bearer(issuer.token(sub="u1")))
    assert response.status_code == 201
    assert response.json == {"title": "write tests", "size": 1, "owner": "u1"}
    assert response.headers["Location"] == "/api/v1/sample/items/1"


def test_malformed_json_is_400_problem(client: FlaskClient, issuer: Issuer) -> None:
    response = client.post(
        "/api/v1/sample/items", data='{"title": ', content_type="application/json", headers=bearer(issuer.token())
    )
    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    assert response.json["status"] == 400


def test_non_json_body_is_415(client: FlaskClient, issuer: Issuer) -> None:
    response = client.post("/api/v1/sample/items", data="title=x", headers=bearer(issuer.token()))
    assert response.status_code == 415
    assert response.mimetype == PROBLEM


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "ok", "role": "admin"}, "role"),
        ({"title": ""}, "title"),
        ({"title": "x" * 21}, "title"),
        ({"title": 5}, "title"),
        ({"title": {"$ne": ""}}, "title"),
        ({"title": "ok", "size": "3"}, "size"),
        ({"title": "ok", "size": True}, "size"),
        ({}, "title"),
    ],
)
def test_invalid_body_is_422_naming_the_field(client: FlaskClient, issuer: Issuer, body: dict, field: str) -> None:
    response = client.post("/api/v1/sample/items", json=body, headers=bearer(issuer.token()))
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert field in [error["field"] for error in response.json["errors"]]


def test_a_body_that_is_not_an_object_is_422(client: FlaskClient, issuer: Issuer) -> None:
    response = client.post("/api/v1/sample/items", json=["title"], headers=bearer(issuer.token()))
    assert response.status_code == 422


def test_validation_errors_never_echo_the_input(client: FlaskClient, issuer: Issuer) -> None:
    secret = "hunter2-secret-value"
    response = client.post("/api/v1/sample/items", json={"title": secret * 3}, headers=bearer(issuer.token()))
    assert response.status_code == 422
    assert secret not in response.get_data(as_text=True)


def test_query_is_parsed_from_text(client: FlaskClient, issuer: Issuer) -> None:
    response = client.get("/api/v1/sample/items?status=open&limit=5", headers=bearer(issuer.token()))
    assert response.status_code == 200
    assert response.json == {"status": "open", "limit": 5}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status[$ne]=x", "status[$ne]"),
        ("status=open&status=closed", "status"),
        ("limit=0", "limit"),
        ("limit=1000000", "limit"),
        ("limit=abc", "limit"),
        ("status=maybe", "status"),
        ("unknown=1", "unknown"),
    ],
)
def test_invalid_query_is_422(client: FlaskClient, issuer: Issuer, query: str, field: str) -> None:
    response = client.get(f"/api/v1/sample/items?{query}", headers=bearer(issuer.token()))
    assert response.status_code == 422
    assert field in [error["field"] for error in response.json["errors"]]


def test_body_over_the_limit_is_413_problem(make_app, issuer: Issuer) -> None:
    client = make_app(max_body_bytes=1024).test_client()
    response = client.post(
        "/api/v1/sample/items", json={"title": "x" * 2000}, headers=bearer(issuer.token())
    )
    assert response.status_code == 413
    assert response.mimetype == PROBLEM


@pytest.mark.parametrize("path", ["/api/v1/sample/items/1", "/api/v1/nowhere", "/healthz"])
def test_every_answer_forbids_type_sniffing(client: FlaskClient, path: str) -> None:
    assert client.get(path).headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_route_is_404_problem(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert response.json["title"] == "Not Found"


def test_wrong_method_is_405_problem_with_allow(client: FlaskClient) -> None:
    response = client.delete("/api/v1/sample/public")
    assert response.status_code == 405
    assert response.mimetype == PROBLEM
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_500_problem_without_internals(client: FlaskClient) -> None:
    response = client.get("/api/v1/sample/boom")
    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_request_id_is_echoed_when_sane(client: FlaskClient) -> None:
    response = client.get("/api/v1/sample/public", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("given", [None, "", "has spaces", "x" * 129, "quote\"d", "semi;colon"])
def test_request_id_is_generated_otherwise(client: FlaskClient, given: str | None) -> None:
    headers = {"X-Request-ID": given} if given is not None else {}
    response = client.get("/api/v1/sample/public", headers=headers)
    generated = response.headers["X-Request-ID"]
    assert generated != given
    assert len(generated) == 36
