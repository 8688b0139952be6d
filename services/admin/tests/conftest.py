"""Fixtures for the admin service's tests: a real auth service over HTTP (admin reaches it only
that way), the admin app on the same FerretDB and RabbitMQ, and events to feed its projections."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pymongo import MongoClient
from taskflow_admin import create_app
from taskflow_admin.settings import AdminSettings
from taskflow_auth import create_app as create_auth_app
from taskflow_auth.settings import AuthSettings
from taskflow_tasks import create_app as create_tasks_app
from taskflow_tasks.settings import TasksSettings
from werkzeug.serving import make_server

from tests.support.infra import Infra
from tests.support.processes import free_port

ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "the admin passphrase"


class Served:
    """A real service app served over HTTP on a free port, in a thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", free_port(), app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.extensions["taskflow.mongo"].close()


class AuthServer(Served):
    """The real auth service, which admin reaches only over HTTP."""

    def login(self, email: str, password: str) -> str:
        response = self.app.test_client().post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.json
        return response.json["access_token"]

    def register(self, email: str, name: str = "User") -> dict[str, Any]:
        response = self.app.test_client().post(
            "/api/v1/auth/register", json={"email": email, "password": "a user passphrase", "name": name}
        )
        assert response.status_code == 201, response.json
        return response.json


@pytest.fixture
def prefix(infra: Infra) -> Iterator[str]:
    """A database prefix of this test's own (auth and admin databases), dropped afterwards."""
    value = f"t{uuid.uuid4().hex[:10]}_"
    yield value
    client = MongoClient(infra.mongodb_uri)
    for service in ("auth", "tasks", "admin"):
        client.drop_database(f"{value}{service}")
    client.close()


@pytest.fixture
def auth(infra: Infra, prefix: str, tmp_path: Path) -> Iterator[AuthServer]:
    settings = AuthSettings(
        mongodb_uri=infra.mongodb_uri, rabbitmq_url=infra.rabbitmq_url, mongodb_db_prefix=prefix,
        bcrypt_rounds=4, jwt_private_key_file=tmp_path / "key.pem", taskflow_env="test",
        admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, trusted_proxy_hops=0,
    )
    server = AuthServer(create_auth_app(settings))
    yield server
    server.close()


@pytest.fixture
def tasks(infra: Infra, prefix: str, auth: AuthServer) -> Iterator[Served]:
    """The real tasks service (admin's backfill reads its task snapshots over HTTP)."""
    settings = TasksSettings(
        mongodb_uri=infra.mongodb_uri, rabbitmq_url=infra.rabbitmq_url, mongodb_db_prefix=prefix, taskflow_env="test",
        jwks_url=f"{auth.url}/api/v1/auth/jwks.json", trusted_proxy_hops=0,
    )
    server = Served(create_tasks_app(settings))
    yield server
    server.close()


@pytest.fixture
def make_admin_app(infra: Infra, prefix: str, auth: AuthServer, tasks: Served) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        values = {
            "mongodb_uri": infra.mongodb_uri, "rabbitmq_url": infra.rabbitmq_url, "mongodb_db_prefix": prefix,
            "auth_url": auth.url, "tasks_url": tasks.url, "jwks_url": f"{auth.url}/api/v1/auth/jwks.json",
            "taskflow_env": "test",
            "trusted_proxy_hops": 0, **overrides,
        }
        settings = AdminSettings(**values)
        app = create_app(settings)
        app.testing = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["taskflow.mongo"].close()


@pytest.fixture
def admin_app(make_admin_app: Callable[..., Flask]) -> Flask:
    return make_admin_app()


@pytest.fixture
def admin_token(auth: AuthServer) -> str:
    return auth.login(ADMIN_EMAIL, ADMIN_PASSWORD)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
