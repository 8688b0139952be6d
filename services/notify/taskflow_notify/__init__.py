"""The notify service. The in-app inbox, email and due-date reminders, driven by events (DESIGN §4 notify)."""

from __future__ import annotations

from flask import Flask
from taskflow_common.app import create_service_app
from taskflow_common.mongo import Mongo

from .api import api
from .settings import NotifySettings


def create_app(settings: NotifySettings | None = None) -> Flask:
    """The notify service's WSGI app; ``settings`` default to the environment's."""
    settings = settings or NotifySettings()
    mongo = Mongo(
        settings.mongodb_uri,
        settings.database_name,
        app_name="taskflow-notify",
        timeout_seconds=settings.dependency_timeout_seconds,
    )
    return create_service_app(settings, [api], mongo=mongo)
