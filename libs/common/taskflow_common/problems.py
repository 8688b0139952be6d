"""RFC 9457 problem details: the only error format any TaskFlow endpoint returns.

Domain code raises a :class:`Problem` subclass (``TaskNotFound``, ``EmailTaken``); the handlers
installed by :func:`install_error_handlers` turn it, and every error Flask, werkzeug or the
database raises, into ``application/problem+json``. Never HTML, never a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from flask import Flask, Response
from pydantic import BaseModel
from pymongo.errors import ConnectionFailure
from werkzeug.exceptions import HTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger(__name__)


class FieldError(BaseModel):
    """One invalid input: ``field`` is a dotted path into the body or the query name."""

    field: str
    message: str


class ProblemDetails(BaseModel):
    """The problem details object (RFC 9457 §3.1), with TaskFlow's ``errors`` extension (§3.2)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    """An error answered with problem details.

    Subclasses fix ``status``, ``title`` and ``type``; an instance adds the ``detail`` of this
    occurrence. ``type`` stays ``about:blank`` when the HTTP status says all (RFC 9457 §4.2.1).

    Args:
        detail: human-readable explanation of this occurrence; never secrets.
        status, title, type: override the class values.
        errors: field errors, for 422 validation failures.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``, ``Allow``).
        extensions: further members of the problem object (RFC 9457 §3.2).
    """

    status: int = 500
    title: str | None = None
    type: str = "about:blank"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        title: str | None = None,
        type: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status or self.status
        self.title = title or self.title or HTTPStatus(self.status).phrase
        self.type = type or self.type
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def to_response(self) -> Response:
        """Serialize as ``application/problem+json`` with this problem's status and headers."""
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        if self.errors:
            body["errors"] = [error.model_dump() for error in self.errors]
        body.update(self.extensions)
        return Response(json.dumps(body), status=self.status, headers=self.headers, mimetype=PROBLEM_MEDIA_TYPE)


class BadRequest(Problem):
    status = 400


class Unauthorized(Problem):
    """401; ``WWW-Authenticate: Bearer`` tells the client which scheme (RFC 6750 §3)."""

    status = 401

    def __init__(self, detail: str = "A valid bearer token is required.", *, error: str | None = None) -> None:
        challenge = f'Bearer realm="taskflow", error="{error}"' if error else 'Bearer realm="taskflow"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(Problem):
    status = 403


class NotFound(Problem):
    status = 404


class Conflict(Problem):
    status = 409


class PreconditionFailed(Problem):
    status = 412


class UnsupportedMediaType(Problem):
    status = 415


class ValidationFailed(Problem):
    """422 with one :class:`FieldError` per invalid input."""

    status = 422
    type = "urn:taskflow:problem:validation"
    title = "Validation failed"


class TooManyRequests(Problem):
    """429; ``retry_after`` seconds go in ``Retry-After`` (RFC 6585 §4)."""

    status = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(Problem):
    status = 503


def _http_exception(error: HTTPException) -> Response:
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return Problem(error.description, status=error.code or 500, title=error.name, headers=headers).to_response()


def _database_unavailable(error: ConnectionFailure) -> Response:
    log.warning("database unavailable: %s", error)
    return ServiceUnavailable("The database is not answering; retry shortly.", headers={"Retry-After": "1"}).to_response()


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error")
    return Problem("An unexpected error occurred; it has been logged.").to_response()


def install_error_handlers(app: Flask) -> None:
    """Answer every error of ``app`` with problem details, including Flask's own 404/405/413."""
    app.register_error_handler(Problem, lambda problem: problem.to_response())
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(ConnectionFailure, _database_unavailable)
    app.register_error_handler(Exception, _unexpected)
