"""The tasks service: each user's tasks, their filters, search and statistics (DESIGN §4 tasks)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from taskflow_common.app import create_service_app
from taskflow_common.deactivation import DeactivatedUsers
from taskflow_common.events.plumbing import ServiceEvents
from taskflow_common.expiry import expiry_indexes
from taskflow_common.mongo import Mongo
from taskflow_common.tokens import TokenVerifier

from . import idempotency
from .api import api
from .events import TaskEvents
from .idempotency import IdempotentCreates
from .internal import internal, internal_tasks
from .settings import TasksSettings
from .store import EXPIRIES, INDEXES, TASKS, CountStore, TaskStore
from .tasks import Tasks


@dataclass(frozen=True)
class Service:
    """The tasks service's parts, assembled once per process from its settings."""

    settings: TasksSettings
    mongo: Mongo
    events: ServiceEvents
    deactivated: DeactivatedUsers
    tasks: Tasks
    creates: IdempotentCreates


def assemble(settings: TasksSettings) -> Service:
    """Connect the stores and create the indexes."""
    mongo = Mongo(settings.mongodb_uri, settings.database_name, app_name="taskflow-tasks",
                  timeout_seconds=settings.dependency_timeout_seconds)
    events = ServiceEvents("tasks", settings.rabbitmq_url, mongo, [TASKS])
    db = lambda: mongo.db  # noqa: E731 (resolved per call: fork-safe)
    tasks = Tasks(TaskStore(db, events.outbox), CountStore(db), TaskEvents(events))
    expiries = [*EXPIRIES, *idempotency.EXPIRIES, *events.expiries]
    mongo.ensure_indexes([*INDEXES, *events.indexes, *expiry_indexes(mongo.db, expiries)])
    return Service(settings, mongo, events, DeactivatedUsers(db), tasks, IdempotentCreates(db, tasks))


def create_app(settings: TasksSettings | None = None, *, verifier: TokenVerifier | None = None) -> Flask:
    """The tasks service's WSGI app; ``settings`` default to the environment's, ``verifier`` to
    auth's JWKS at ``JWKS_URL`` (tests give one with their own key)."""
    service = assemble(settings or TasksSettings.load())
    app = create_service_app(
        service.settings,
        [api, internal, internal_tasks],
        mongo=service.mongo,
        verifier=verifier,
        access_policy=service.deactivated,
    )
    app.extensions["taskflow_tasks.tasks"] = service.tasks
    app.extensions["taskflow_tasks.creates"] = service.creates
    app.extensions["taskflow_tasks.deactivated"] = service.deactivated
    return app
