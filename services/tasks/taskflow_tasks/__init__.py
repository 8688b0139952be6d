"""The tasks service. Each user's tasks: CRUD, filtering, search, statistics (DESIGN §4 tasks)."""

from __future__ import annotations

from flask import Flask
from taskflow_common.app import create_service_app
from taskflow_common.mongo import Mongo

from .api import api
from .settings import TasksSettings


def create_app(settings: TasksSettings | None = None) -> Flask:
    """The tasks service's WSGI app; ``settings`` default to the environment's."""
    settings = settings or TasksSettings()
    mongo = Mongo(
        settings.mongodb_uri,
        settings.database_name,
        app_name="taskflow-tasks",
        timeout_seconds=settings.dependency_timeout_seconds,
    )
    return create_service_app(settings, [api], mongo=mongo)
