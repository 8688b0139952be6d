"""The auth service. Accounts, credentials and the tokens every other service trusts (DESIGN §4 auth)."""

from __future__ import annotations

from flask import Flask
from taskflow_common.app import create_service_app
from taskflow_common.mongo import Mongo

from .api import api
from .settings import AuthSettings


def create_app(settings: AuthSettings | None = None) -> Flask:
    """The auth service's WSGI app; ``settings`` default to the environment's."""
    settings = settings or AuthSettings()
    mongo = Mongo(
        settings.mongodb_uri,
        settings.database_name,
        app_name="taskflow-auth",
        timeout_seconds=settings.dependency_timeout_seconds,
    )
    return create_service_app(settings, [api], mongo=mongo)
