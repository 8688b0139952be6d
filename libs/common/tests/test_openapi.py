"""The OpenAPI document is generated from the same models that validate requests."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from taskflow_common.api import Api, Link, requires_one_of


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


def test_headers_every_client_may_rely_on_are_documented(client: FlaskClient) -> None:
    document = client.get("/api/v1/sample/openapi.json").json
    create = document["paths"]["/api/v1/sample/items"]["post"]["responses"]
    assert set(create["201"]["headers"]) == {"X-Request-ID", "Location"}
    assert set(create["401"]["headers"]) == {"X-Request-ID", "WWW-Authenticate"}
    assert set(create["429"]["headers"]) == {"X-Request-ID", "Retry-After"}
    assert document["components"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    assert all(header["required"] for header in document["components"]["headers"].values())


def test_security_names_the_admin_role(client: FlaskClient) -> None:
    paths = client.get("/api/v1/sample/openapi.json").json["paths"]
    assert paths["/api/v1/sample/admin-only"]["get"]["security"] == [{"bearerAuth": ["admin"]}]
    assert paths["/api/v1/sample/items"]["get"]["security"] == [{"bearerAuth": []}]


def test_links_lead_to_operations_of_the_same_api(client: FlaskClient) -> None:
    paths = client.get("/api/v1/sample/openapi.json").json["paths"]
    links = paths["/api/v1/sample/items"]["post"]["responses"]["201"]["links"]
    assert links == {"GetItem": {"operationId": "sample_get_item", "parameters": {"item_id": "$response.body#/title"}}}
    assert paths["/api/v1/sample/items/{item_id}"]["get"]["operationId"] == "sample_get_item"


def test_a_link_to_an_unknown_operation_is_refused() -> None:
    api = Api("broken", "/api/v1/broken", title="Broken")

    @api.get("/x", summary="x", access="public", links={"Nowhere": Link("missing")})
    def x() -> None:
        """Nothing."""

    with pytest.raises(ValueError, match="unknown operation 'missing'"):
        api.openapi_document()


def test_an_undescribed_response_header_is_refused() -> None:
    api = Api("broken", "/api/v1/broken", title="Broken")
    with pytest.raises(ValueError, match="X-Secret"):
        api.get("/x", summary="x", response_headers=("X-Secret",))


def test_optional_query_values_are_never_null_and_long_urls_may_be_414(client: FlaskClient) -> None:
    paths = client.get("/api/v1/sample/openapi.json").json["paths"]
    listing = paths["/api/v1/sample/items"]["get"]
    status = next(parameter for parameter in listing["parameters"] if parameter["name"] == "status")
    assert status["schema"]["enum"] == ["open", "closed"] and "anyOf" not in status["schema"]
    assert "414" in listing["responses"] and "414" in paths["/api/v1/sample/items/{item_id}"]["get"]["responses"]
    assert "414" not in paths["/api/v1/sample/public"]["get"]["responses"]


def test_requires_one_of_says_what_a_nothing_to_change_validator_refuses() -> None:
    schema = {"type": "object", **requires_one_of("role", "active")}
    assert Draft202012Validator(schema).is_valid({"role": "admin", "active": None})
    assert not Draft202012Validator(schema).is_valid({})
    assert not Draft202012Validator(schema).is_valid({"role": None, "active": None})
