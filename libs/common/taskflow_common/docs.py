"""The API documentation page: Swagger UI over every service's OpenAPI document.

The page and its scripts come from the ``flask-swagger-ui`` package (Swagger UI 5, which reads
OpenAPI 3.1), never from a CDN: the machine and many users are offline. Kong (DB-less) serves no
files, so one service hosts the page; the browser fetches each service's document through the
gateway (``/api/v1/<prefix>/openapi.json``).

The page shares its origin with the web client, whose refresh token a script here could read, so
it gets a strict ``Content-Security-Policy`` of its own (CSP Level 3, W3C): scripts from this
origin and the one inline script the package writes, allowed by its SHA-256 (that script holds
the request's URL, so its hash is taken from each page as rendered), nothing framed, and
requests to this origin only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from flask import Blueprint, Response, redirect
from flask_swagger_ui import get_swaggerui_blueprint

URL_PREFIX = "/api/v1/docs"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# Swagger UI sets style attributes and shows images as data: URLs; nothing else is let in.
_POLICY = ("default-src 'none'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
           "frame-ancestors 'none'")


def content_security_policy(page: str) -> str:
    """The policy of a rendered docs ``page``: each of its inline scripts allowed by its
    ``'sha256-<base64>'`` source (CSP Level 3 §2.3.1), everything else from this origin or nowhere."""
    hashes = (base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
              for script in _INLINE_SCRIPT.findall(page))
    return _POLICY.format(scripts=" ".join(["'self'", *(f"'sha256-{digest}'" for digest in hashes)]))


def docs_blueprint(documents: Mapping[str, str]) -> Blueprint:
    """The page at ``/api/v1/docs/``, listing ``documents`` (service name → OpenAPI document URL)."""
    urls = [{"name": name, "url": url} for name, url in documents.items()]
    blueprint = get_swaggerui_blueprint(
        URL_PREFIX,
        urls[0]["url"],
        config={"app_name": "TaskFlow API", "urls": urls, "deepLinking": True, "displayRequestDuration": True},
        blueprint_name="api_docs",
    )

    @blueprint.route("", strict_slashes=True)
    def without_slash() -> Response:
        # A path, not Werkzeug's absolute redirect: that one is built from the Host header, which
        # a gateway may rewrite (nginx's $host drops the port, Kong sends the upstream's name).
        return redirect(f"{URL_PREFIX}/", code=308)

    @blueprint.after_request
    def protect(response: Response) -> Response:
        if response.mimetype == "text/html":
            # A file sent as it is (the package's oauth2-redirect.html, a flow TaskFlow does not
            # use) is not read here: its inline script stays blocked.
            page = "" if response.direct_passthrough else response.get_data(as_text=True)
            response.headers["Content-Security-Policy"] = content_security_policy(page)
        return response

    return blueprint
