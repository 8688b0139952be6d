"""Fixtures for the tasks service's tests: its real app on the session's FerretDB and RabbitMQ,
a database of its own per test, and users holding tokens of a test issuer (the app trusts its
key instead of auth's JWKS)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo import MongoClient
from pymongo.database import Database
from taskflow_tasks import create_app
from taskflow_tasks.settings import TasksSettings
from taskflow_tasks.tasks import Tasks

from tests.support.infra import Infra
from tests.support.tokens import Issuer

TASKS = "/api/v1/tasks"


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def make_app(infra: Infra, issuer: Issuer) -> Iterator[Callable[..., Flask]]:
    """Build the tasks app on a database of its own; ``**overrides`` change its settings."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        values = {
            "mongodb_uri": infra.mongodb_uri,
            "rabbitmq_url": infra.rabbitmq_url,
            "mongodb_db_prefix": f"t{uuid.uuid4().hex[:10]}_",
            "taskflow_env": "test",
            "trusted_proxy_hops": 0,
            **overrides,
        }
        application = create_app(TasksSettings(**values), verifier=issuer.verifier())
        application.testing = True
        apps.append(application)
        return application

    yield make
    client = MongoClient(infra.mongodb_uri)
    for application in apps:
        mongo = application.extensions["taskflow.mongo"]
        client.drop_database(mongo.database_name)
        mongo.close()
    client.close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def domain(app: Flask) -> Tasks:
    return app.extensions["taskflow_tasks.tasks"]


@pytest.fixture
def db(app: Flask) -> Database:
    return app.extensions["taskflow.mongo"].db


@dataclass
class User:
    """A caller: their id and a ready ``Authorization`` header."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def new_user(issuer: Issuer) -> Callable[..., User]:
    """A fresh user id with a valid token (``role="admin"`` for an admin)."""

    def make(role: str = "user") -> User:
        user_id = uuid.uuid4().hex[:24]
        return User(user_id, issuer.token(sub=user_id, role=role))

    return make


@pytest.fixture
def alice(new_user: Callable[..., User]) -> User:
    return new_user()


@pytest.fixture
def bob(new_user: Callable[..., User]) -> User:
    return new_user()


@pytest.fixture
def create_task(client: FlaskClient, alice: User) -> Callable[..., dict[str, Any]]:
    """Create a task through the API (``title`` defaults to a unique one); returns the 201 body."""

    def make(owner: User | None = None, **fields: Any) -> dict[str, Any]:
        body = {"title": f"task {uuid.uuid4().hex[:6]}", **fields}
        response = client.post(TASKS, json=body, headers=(owner or alice).headers)
        assert response.status_code == 201, response.json
        return response.json

    return make
