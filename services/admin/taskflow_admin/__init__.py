"""The admin service: user management, system statistics and an audit log, built from events
(DESIGN §4 admin). It owns no users or tasks; it changes users only through auth."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from taskflow_common import deactivation
from taskflow_common.app import create_service_app
from taskflow_common.events.plumbing import ServiceEvents
from taskflow_common.expiry import expiry_indexes
from taskflow_common.mongo import Mongo

from .administration import Administration
from .api import api
from .events import Projections
from .settings import AdminSettings
from .store import INDEXES, ReadModels
from .upstream import ServiceClient, Upstreams


@dataclass(frozen=True)
class Admin:
    """The admin service's parts, assembled once per process from its settings."""

    settings: AdminSettings
    mongo: Mongo
    events: ServiceEvents
    administration: Administration
    deactivated: deactivation.DeactivatedUsers


def assemble(settings: AdminSettings) -> Admin:
    mongo = Mongo(settings.mongodb_uri, settings.database_name, app_name="taskflow-admin",
                  timeout_seconds=settings.dependency_timeout_seconds)
    events = ServiceEvents("admin", settings.rabbitmq_url, mongo)
    read_models = ReadModels(lambda: mongo.db)
    administration = Administration(
        read_models,
        Projections(read_models),
        Upstreams(
            ServiceClient("auth", settings.auth_url, timeout_seconds=settings.upstream_timeout_seconds),
            ServiceClient("tasks", settings.tasks_url, timeout_seconds=settings.upstream_timeout_seconds),
        ),
    )
    mongo.ensure_indexes([*INDEXES, *events.indexes, *expiry_indexes(mongo.db, events.expiries)])
    return Admin(settings, mongo, events, administration, deactivation.DeactivatedUsers(lambda: mongo.db))


def create_app(settings: AdminSettings | None = None) -> Flask:
    """The admin service's WSGI app; ``settings`` default to the environment's."""
    admin = assemble(settings or AdminSettings.load())
    app = create_service_app(admin.settings, [api], mongo=admin.mongo, access_policy=admin.deactivated)
    app.extensions["taskflow_admin"] = admin.administration
    return app
