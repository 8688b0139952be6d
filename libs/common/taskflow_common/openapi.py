"""The OpenAPI 3.1 document of a declared API, built from its operations and their pydantic models.

Besides the models' JSON schemas, the document states what a client can rely on from outside
(DESIGN §3) so that a generated client, or a contract test, means the same as the contract:

- every response carries ``X-Request-ID``; a 401 carries ``WWW-Authenticate: Bearer`` (RFC 6750
  §3), a 429 ``Retry-After`` in seconds (RFC 6585 §4), a 503 may carry one;
- the success response of an operation carries the headers it declares (``Location``, ``ETag``…)
  and the links it declares to other operations (OpenAPI 3.1 §4.8.20, for stateful clients);
- the security requirement names the role an operation needs, ``bearerAuth: ["admin"]`` for
  admins only (OpenAPI 3.1 §4.8.30 allows role names for schemes other than OAuth 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .problems import PROBLEM_MEDIA_TYPE, ProblemDetails

if TYPE_CHECKING:
    from .api import Operation

JSON_MEDIA_TYPE = "application/json"
PATH_PARAMETER = re.compile(r"<(?:[a-z_]+:)?([A-Za-z_][A-Za-z0-9_]*)>")
_SCHEMA_REF = "#/components/schemas/{model}"

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The caller's request id if it was short and plain, otherwise a new UUID.",
        "schema": {"type": "string", "minLength": 1},
    },
    "Location": {
        "description": "Where the created resource is (RFC 9110 §10.2.2).",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "ETag": {
        "description": "The representation's entity tag, for If-Match (RFC 9110 §8.8.3).",
        "schema": {"type": "string", "pattern": '^(W/)?"[\\x21\\x23-\\x7e]*"$'},
    },
    "Cache-Control": {
        "description": "How long, if at all, the response may be cached (RFC 9111 §5.2).",
        "schema": {"type": "string", "minLength": 1},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again (RFC 9110 §10.2.3).",
        "schema": {"type": "integer", "minimum": 1},
    },
    "Set-Cookie": {
        "description": "The device cookie `taskflow_device` (HttpOnly, SameSite=Strict, path /api/v1/auth): "
        "the device is known to the account, and its failed sign-ins spend a budget of their own (RFC 6265 §4.1).",
        "schema": {"type": "string", "pattern": "^taskflow_device="},
    },
    "WWW-Authenticate": {
        "description": "The bearer challenge (RFC 6750 §3).",
        "schema": {"type": "string", "pattern": "^Bearer "},
    },
}
"""The response headers TaskFlow sends, each with what a client may rely on."""

_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}},
    429: {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
    503: {"Retry-After": {**HEADERS["Retry-After"], "required": False}},
}
"""Headers of problem responses by status, beyond ``X-Request-ID``."""


@dataclass(frozen=True)
class Link:
    """A link from an operation's success response to another operation of the same API.

    Args:
        operation: the target's view name (its ``operationId`` is ``<api name>_<view name>``).
        parameters: target parameter name → runtime expression, e.g.
            ``{"user_id": "$response.body#/id"}`` (OpenAPI 3.1 §4.8.20.4).
        request_body: the target's request body, a runtime expression or a JSON value with them.
        description: what following the link does.
    """

    operation: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    request_body: Any = None
    description: str | None = None


def build_document(
    operations: Sequence[Operation], *, name: str, url_prefix: str, info: Mapping[str, str]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``, all under ``url_prefix``.

    Raises:
        ValueError: a link names an operation that is not among ``operations``.
    """
    wanted: set[tuple[type[BaseModel], Literal["validation", "serialization"]]] = {(ProblemDetails, "serialization")}
    for operation in operations:
        wanted |= {(model, "validation") for model in (operation.body, operation.query) if model}
        if operation.response:
            wanted.add((operation.response, "serialization"))
    ordered = sorted(wanted, key=lambda item: (item[0].__name__, item[1]))
    refs, definitions = models_json_schema(ordered, ref_template=_SCHEMA_REF)
    names = {operation.name for operation in operations}
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        path = PATH_PARAMETER.sub(r"{\1}", url_prefix + operation.rule)
        paths.setdefault(path, {})[operation.method.lower()] = _operation_object(operation, refs, name, names)
    return {
        "openapi": "3.1.0",
        "info": dict(info),
        "tags": [{"name": name}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "headers": {header: {**definition, "required": True} for header, definition in HEADERS.items()},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _headers(names: Sequence[str]) -> dict[str, Any]:
    """References to ``components.headers``, where every header is required."""
    return {header: {"$ref": f"#/components/headers/{header}"} for header in ("X-Request-ID", *names)}


def _links(operation: Operation, api_name: str, names: set[str]) -> dict[str, Any]:
    links = {}
    for link_name, link in operation.links.items():
        if link.operation not in names:
            raise ValueError(f"{operation.name}: link {link_name!r} names an unknown operation {link.operation!r}")
        target: dict[str, Any] = {"operationId": f"{api_name}_{link.operation}"}
        if link.parameters:
            target["parameters"] = dict(link.parameters)
        if link.request_body is not None:
            target["requestBody"] = link.request_body
        if link.description:
            target["description"] = link.description
        links[link_name] = target
    return links


def _query_value(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: an optional field's ``None`` means "not given", never a value."""
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    if "anyOf" not in schema or len(branches) == len(schema["anyOf"]):
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf" and not (key == "default" and value is None)}
    return {**branches[0], **rest} if len(branches) == 1 else {**rest, "anyOf": branches}


def _operation_object(operation: Operation, refs: dict, api_name: str, names: set[str]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAMETER.findall(operation.rule)
    ]
    if operation.query is not None:
        query_schema = operation.query.model_json_schema(ref_template=_SCHEMA_REF)
        required = set(query_schema.get("required", []))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": _query_value(property_schema)}
            for name, property_schema in query_schema["properties"].items()
        ]
    success: dict[str, Any] = {
        "description": HTTPStatus(operation.status).phrase,
        "headers": _headers(operation.response_headers),
    }
    if operation.response is not None:
        success["content"] = {JSON_MEDIA_TYPE: {"schema": refs[(operation.response, "serialization")]}}
    if operation.links:
        success["links"] = _links(operation, api_name, names)
    responses: dict[str, Any] = {str(operation.status): success}
    problem = {PROBLEM_MEDIA_TYPE: {"schema": refs[(ProblemDetails, "serialization")]}}
    for status in operation.error_statuses:
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "headers": {**_headers(()), **_ERROR_HEADERS.get(status, {})},
            "content": problem,
        }
    result: dict[str, Any] = {
        "operationId": f"{api_name}_{operation.name}",
        "summary": operation.summary,
        "tags": [api_name],
        "parameters": parameters,
        "responses": responses,
    }
    if operation.description:
        result["description"] = operation.description
    if operation.body is not None:
        result["requestBody"] = {
            "required": True,
            "content": {JSON_MEDIA_TYPE: {"schema": refs[(operation.body, "validation")]}},
        }
    if operation.access != "public":
        result["security"] = [{"bearerAuth": ["admin"] if operation.access == "admin" else []}]
    return result
