"""The API documentation page: Swagger UI over every service's OpenAPI document.

The page and its scripts come from the ``flask-swagger-ui`` package (Swagger UI 5, which reads
OpenAPI 3.1), never from a CDN: the machine and many users are offline. Kong (DB-less) serves no
files, so one service hosts the page; the browser fetches each service's document through the
gateway (``/api/v1/<prefix>/openapi.json``).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint
from flask_swagger_ui import get_swaggerui_blueprint

URL_PREFIX = "/api/v1/docs"


def docs_blueprint(documents: Mapping[str, str]) -> Blueprint:
    """The page at ``/api/v1/docs/``, listing ``documents`` (service name → OpenAPI document URL)."""
    urls = [{"name": name, "url": url} for name, url in documents.items()]
    return get_swaggerui_blueprint(
        URL_PREFIX,
        urls[0]["url"],
        config={"app_name": "TaskFlow API", "urls": urls, "deepLinking": True, "displayRequestDuration": True},
        blueprint_name="api_docs",
    )
