"""The admin service. User management, system statistics and the audit log, built from events (DESIGN §4 admin)."""

from __future__ import annotations

from flask import Flask
from taskflow_common.app import create_service_app
from taskflow_common.mongo import Mongo

from .api import api
from .settings import AdminSettings


def create_app(settings: AdminSettings | None = None) -> Flask:
    """The admin service's WSGI app; ``settings`` default to the environment's."""
    settings = settings or AdminSettings()
    mongo = Mongo(
        settings.mongodb_uri,
        settings.database_name,
        app_name="taskflow-admin",
        timeout_seconds=settings.dependency_timeout_seconds,
    )
    return create_service_app(settings, [api], mongo=mongo)
