"""The OpenAPI document is generated from the same models that validate requests."""

from __future__ import annotations

from flask.testing import FlaskClient
from openapi_spec_validator import validate


def test_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = client.get("/api/v1/sample/openapi.json").json
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_document_describes_bodies_queries_errors_and_security(client: FlaskClient) -> None:
    document = client.get("/api/v1/sample/openapi.json").json
    create = document["paths"]["/api/v1/sample/items"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ItemIn"}
    assert {"201", "400", "401", "413", "415", "422"} <= set(create["responses"])
    assert create["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"].endswith("ProblemDetails")
    assert create["security"] == [{"bearerAuth": []}]
    assert document["components"]["schemas"]["ItemIn"]["additionalProperties"] is False
    listing = document["paths"]["/api/v1/sample/items"]["get"]
    assert {parameter["name"] for parameter in listing["parameters"]} == {"status", "limit"}
    public = document["paths"]["/api/v1/sample/public"]["get"]
    assert "security" not in public and "401" not in public["responses"]
