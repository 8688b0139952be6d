"""The one way a TaskFlow service's Flask app is assembled.

:func:`create_service_app` wires what every service does the same way, in this order: proxy
headers, JSON problem details for every error, request ids, ``nosniff``, the access log, server
spans, request timing, health endpoints, token verification, then the service's own declared APIs.
Tracing and logging of the process are set up separately, after gunicorn forks
(:func:`taskflow_common.observability.setup_process`); metrics are served by gunicorn's master.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from . import health, metrics, problems, request_id, tokens
from .observability import logs, tracing
from .api import Api
from .mongo import Mongo
from .settings import ServiceSettings


def _no_sniff(response: Response) -> Response:
    """Browsers take every answer as the type it declares, never a guess (Fetch §3.5.6): a JSON
    answer holding markup is never run as a page, whichever gateway is in front."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_service_app(
    settings: ServiceSettings,
    apis: Sequence[Api],
    *,
    mongo: Mongo,
    verifier: tokens.TokenVerifier | None = None,
    access_policy: tokens.AccessPolicy | None = None,
) -> Flask:
    """Build a service's Flask app.

    Args:
        settings: the service's settings; ``max_body_bytes`` bounds request bodies (413 above).
        apis: the service's declared APIs (each a blueprint with its OpenAPI document).
        mongo: the service's database; ``/readyz`` needs it to answer, and reports (without
            needing) ``settings.rabbitmq_url``.
        verifier: checks bearer tokens on every non-public operation; by default against the
            JWKS at ``settings.jwks_url``.
        access_policy: rejects principals whose tokens are valid but who may no longer act.
    """
    verifier = verifier or tokens.TokenVerifier(tokens.RemoteJWKS(settings.jwks_url))
    app = Flask(f"taskflow_{settings.service}")
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, TASKFLOW_SETTINGS=settings)
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    problems.install_error_handlers(app)
    request_id.install(app)
    app.after_request(_no_sniff)
    logs.log_requests(app)
    tracing.instrument_app(app)
    metrics.install(app)
    app.register_blueprint(health.blueprint(
        required=[health.mongodb_check(mongo)],
        reported=[health.rabbitmq_check(settings.rabbitmq_url, settings.dependency_timeout_seconds)],
    ))
    tokens.install(app, verifier, access_policy)
    app.extensions["taskflow.mongo"] = mongo
    for api in apis:
        app.url_map.converters.update(api.converters)
        app.register_blueprint(api.blueprint)
    return app
