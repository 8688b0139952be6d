"""Fixtures for the shared library's tests: a service app assembled by create_service_app,
backed by the session's real FerretDB and RabbitMQ, with keys of a test issuer."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo import MongoClient
from pymongo.database import Database
from taskflow_common.api import Api
from taskflow_common.app import create_service_app
from taskflow_common.mongo import Mongo
from taskflow_common.settings import ServiceSettings
from taskflow_common.tokens import StaticJWKS, TokenVerifier

from tests.support.infra import Infra
from tests.support.tokens import Issuer

from .sample_api import sample_api


class SampleSettings(ServiceSettings):
    service: ClassVar[str] = "sample"


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def make_app(infra: Infra, issuer: Issuer) -> Iterator[Callable[..., Flask]]:
    """Build a sample service app on the real infrastructure; ``**settings`` override its settings."""
    mongos: list[Mongo] = []

    def build(apis: list[Api] | None = None, **settings: Any) -> Flask:
        values = {"mongodb_uri": infra.mongodb_uri, "rabbitmq_url": infra.rabbitmq_url, **settings}
        config = SampleSettings(**values)
        mongo = Mongo(config.mongodb_uri, config.database_name, app_name="sample", timeout_seconds=1)
        mongos.append(mongo)
        verifier = TokenVerifier(StaticJWKS(issuer.jwks))
        app = create_service_app(config, apis if apis is not None else [sample_api], mongo=mongo, verifier=verifier)
        app.testing = True
        return app

    yield build
    for mongo in mongos:
        mongo.close()


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


@pytest.fixture
def db(infra: Infra) -> Iterator[Database]:
    """A database of this test's own on the session's FerretDB, dropped afterwards."""
    client = MongoClient(infra.mongodb_uri, tz_aware=True)
    database = client[f"common_{uuid.uuid4().hex[:12]}"]
    yield database
    client.drop_database(database.name)
    client.close()
