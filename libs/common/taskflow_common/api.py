"""Declared API operations: one decorator states a route's models, and from it come both the
request validation and the OpenAPI 3.1 document, so the two cannot drift.

A view declares ``body`` and ``query`` pydantic models and receives validated instances; a
view that needs a caller receives ``principal``. What a client gets for bad input is part of the
contract (DESIGN §3), so this layer decides it exactly:

- a body that is not JSON (Content-Type) → 415; malformed JSON → 400;
- a body or query that fails its model, including unknown fields and a query parameter given
  more than once or as ``name[op]`` → 422 with one ``{"field", "message"}`` per error;
- no or an invalid bearer token → 401; the wrong role or a deactivated account → 403.

flask-openapi3 and spectree were tried for this and rejected: both parse bodies with
``get_json(silent=True)`` (malformed JSON becomes 422, a JSON string body is parsed a second time)
and flask-openapi3 rebuilds the query model's JSON schema on every request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, ValidationError
from werkzeug.routing import BaseConverter

from .openapi import HEADERS, JSON_MEDIA_TYPE, PATH_PARAMETER, Link, build_document
from .problems import BadRequest, FieldError, UnsupportedMediaType, ValidationFailed
from .tokens import authenticate

Access = Literal["public", "user", "admin"]


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are errors, JSON types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


def requires_one_of(*names: str) -> dict[str, Any]:
    """JSON Schema (a model's ``json_schema_extra``): at least one of the fields ``names`` is
    given and not null, as a model validator that refuses "nothing to change" enforces."""
    return {"anyOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]}


class QueryParameters(BaseModel):
    """Base of query strings: unknown parameters are errors; values are parsed from text."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Operation:
    """One route of a service as the OpenAPI document describes it."""

    method: str
    rule: str
    name: str
    summary: str
    description: str | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    access: Access
    errors: tuple[int, ...]
    response_headers: tuple[str, ...]
    links: Mapping[str, Link] = field(default_factory=dict)

    @property
    def error_statuses(self) -> list[int]:
        """Every problem status this operation can answer, derived from what it declares.

        Any operation may be rate limited (429) or find a dependency down (503); one whose URL
        carries client data may be refused by the gateway as too long (414).
        """
        statuses = set(self.errors) | {429, 503}
        if self.body is not None:
            statuses |= {400, 413, 415, 422}
        if self.query is not None:
            statuses |= {400, 422}
        if self.query is not None or PATH_PARAMETER.search(self.rule):
            statuses.add(414)
        if self.access != "public":
            statuses |= {401, 403}
        return sorted(statuses)


def _message(item: Mapping[str, Any]) -> str:
    """The message a person reads for one pydantic error: a validator's own words without the
    ``"Value error, "`` pydantic puts before a ``ValueError``'s text."""
    if item["type"] == "extra_forbidden":
        return "unknown field"
    if item["type"] == "value_error":
        return str(item["msg"]).removeprefix("Value error, ")
    return str(item["msg"])


def field_errors(error: ValidationError, *, prefix: str = "") -> list[FieldError]:
    """pydantic errors → TaskFlow's ``errors`` members; the offending values are never echoed."""
    result = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        path = ".".join(str(part) for part in item["loc"]) or prefix or "body"
        result.append(FieldError(field=path, message=_message(item)))
    return result


def parse_body(model: type[BaseModel]) -> BaseModel:
    """Validate the request body against ``model`` (see the module docstring for statuses)."""
    mimetype = request.mimetype
    if mimetype != JSON_MEDIA_TYPE and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    try:
        return model.model_validate_json(request.get_data(cache=True))
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise BadRequest("The request body is not valid JSON.") from None
        raise ValidationFailed("The request body is invalid.", errors=field_errors(error)) from None


def parse_query(model: type[BaseModel]) -> BaseModel:
    """Validate the query string against ``model``; a repeated parameter is an error, not a list."""
    values: dict[str, str] = {}
    repeated = []
    for name, given in request.args.lists():
        if len(given) > 1:
            repeated.append(FieldError(field=name, message="must be given once"))
        values[name] = given[0]
    try:
        parsed = model.model_validate(values)
    except ValidationError as error:
        raise ValidationFailed("The query string is invalid.", errors=repeated + field_errors(error)) from None
    if repeated:
        raise ValidationFailed("The query string is invalid.", errors=repeated)
    return parsed


def _respond(result: Any, status: int) -> Response:
    if isinstance(result, Response):
        return result
    headers: dict[str, str] = {}
    if isinstance(result, tuple):
        result, headers = result
    if result is None:
        return Response(status=status, headers=headers)
    if isinstance(result, BaseModel):
        return Response(result.model_dump_json(), status=status, headers=headers, mimetype=JSON_MEDIA_TYPE)
    response = jsonify(result)
    response.status_code = status
    response.headers.update(headers)
    return response


class Api:
    """A Flask blueprint whose routes are declared with their models, plus its OpenAPI document.

    Args:
        name: blueprint name, also the OpenAPI tag.
        url_prefix: where the routes live, e.g. ``/api/v1/tasks``; the document is served at
            ``<url_prefix>/openapi.json``.
        title, version, description: the OpenAPI ``info`` object.
        converters: URL converters the rules use by name (``<task_id:task_id>``); the app
            registers them before the rules.
    """

    def __init__(
        self,
        name: str,
        url_prefix: str,
        *,
        title: str,
        version: str = "1.0.0",
        description: str = "",
        converters: dict[str, type[BaseConverter]] | None = None,
    ):
        self.name = name
        self.url_prefix = url_prefix
        self.converters = converters or {}
        self.info = {"title": title, "version": version, "description": description}
        self.operations: list[Operation] = []
        self._document: dict[str, Any] | None = None
        self.blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
        self.blueprint.add_url_rule("/openapi.json", "openapi", lambda: jsonify(self.openapi_document()))

    def route(
        self,
        method: str,
        rule: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        access: Access = "user",
        errors: Iterable[int] = (),
        response_headers: Iterable[str] = (),
        links: Mapping[str, Link] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
        """Register a view for ``method`` ``rule`` (a Flask rule relative to the prefix).

        The view receives its path parameters plus ``body`` / ``query`` (validated models) and
        ``principal`` (unless ``access`` is ``public``). It returns a model (sent with
        ``status``), ``(model, headers)``, ``None`` (an empty body, e.g. 204) or a Response.
        ``response_headers`` names the headers every success response carries (each one of
        :data:`~taskflow_common.openapi.HEADERS`); ``links`` leads from the success response to
        other operations of this API (documentation only).

        Raises:
            ValueError: a response header TaskFlow does not describe.
        """
        response_headers = tuple(response_headers)
        unknown = set(response_headers) - set(HEADERS)
        if unknown:
            raise ValueError(f"undescribed response headers: {sorted(unknown)}")

        def decorator(view: Callable[..., Any]) -> Callable[..., Response]:
            operation = Operation(
                method=method.upper(),
                rule=rule,
                name=view.__name__,
                summary=summary,
                description=inspect.getdoc(view),
                body=body,
                query=query,
                response=response,
                status=status,
                access=access,
                errors=tuple(errors),
                response_headers=response_headers,
                links=dict(links or {}),
            )
            wants_principal = "principal" in inspect.signature(view).parameters

            @wraps(view)
            def endpoint(**path: str) -> Response:
                arguments: dict[str, Any] = dict(path)
                if access != "public":
                    principal = authenticate(require_admin=access == "admin")
                    if wants_principal:
                        arguments["principal"] = principal
                if query is not None:
                    arguments["query"] = parse_query(query)
                if body is not None:
                    arguments["body"] = parse_body(body)
                return _respond(view(**arguments), status)

            self.blueprint.add_url_rule(rule, view.__name__, endpoint, methods=[operation.method])
            self.operations.append(operation)
            self._document = None
            return endpoint

        return decorator

    def get(self, rule: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
        return self.route("GET", rule, **options)

    def post(self, rule: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
        return self.route("POST", rule, **options)

    def patch(self, rule: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
        return self.route("PATCH", rule, **options)

    def delete(self, rule: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
        return self.route("DELETE", rule, **options)

    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every declared operation, schemas from the same models."""
        if self._document is None:
            self._document = build_document(self.operations, name=self.name, url_prefix=self.url_prefix, info=self.info)
        return self._document
