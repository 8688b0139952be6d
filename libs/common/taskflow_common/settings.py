"""Typed settings read from the environment once at start-up (DESIGN §7, twelve-factor).

Every service subclasses :class:`ServiceSettings` and names itself with ``service``. In
production (``TASKFLOW_ENV=production``) the broker's default ``guest`` account is refused, so a
forgotten secret fails the start instead of running with a well-known password.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MEBIBYTE = 1024 * 1024


class Environment(StrEnum):
    """Where the process runs; production refuses development defaults."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """Settings common to every service.

    Attributes:
        service: the service's name (``auth``, ``tasks``, ``admin``, ``notify``), set by subclasses.
        taskflow_env: ``TASKFLOW_ENV``; development, test or production.
        mongodb_uri: ``MONGODB_URI``; one server, each service uses its own database on it.
        mongodb_db_prefix: ``MONGODB_DB_PREFIX``; the database is ``<prefix><service>``.
        rabbitmq_url: ``RABBITMQ_URL``; an AMQP 0-9-1 URL with the vhost as its path.
        jwks_url: ``JWKS_URL``; auth's public keys, used to verify access tokens.
        log_level: ``LOG_LEVEL``.
        max_body_bytes: ``MAX_BODY_BYTES``; larger request bodies get 413 (DESIGN §3: 1 MiB).
        trusted_proxy_hops: ``TRUSTED_PROXY_HOPS``; gateways in front whose X-Forwarded-For is trusted.
        dependency_timeout_seconds: ``DEPENDENCY_TIMEOUT_SECONDS``; bound on one database or broker check.
    """

    # URLs and keys in the environment may hold passwords: a validation error must not print them.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    service: ClassVar[str] = "service"

    taskflow_env: Environment = Environment.DEVELOPMENT
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    mongodb_db_prefix: str = Field(default="taskflow_", pattern=r"^[A-Za-z0-9_]*$")
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    jwks_url: str = "http://127.0.0.1:5001/api/v1/auth/jwks.json"
    log_level: str = "INFO"
    max_body_bytes: int = Field(default=MEBIBYTE, gt=0)
    trusted_proxy_hops: int = Field(default=1, ge=0)
    dependency_timeout_seconds: float = Field(default=2.0, gt=0)

    @property
    def database_name(self) -> str:
        """This service's own MongoDB database (DESIGN §1: one database per service)."""
        return f"{self.mongodb_db_prefix}{self.service}"

    @model_validator(mode="after")
    def _refuse_development_secrets_in_production(self) -> ServiceSettings:
        if self.taskflow_env is Environment.PRODUCTION and urlsplit(self.rabbitmq_url).username in (None, "guest"):
            raise ValueError("RABBITMQ_URL must name a broker account other than guest in production")
        return self
