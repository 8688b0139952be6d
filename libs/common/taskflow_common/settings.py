"""Typed settings read from the environment once at start-up (DESIGN §7, twelve-factor).

Every service subclasses :class:`ServiceSettings` and names itself with ``service``. In
production (``TASKFLOW_ENV=production``) the broker's default ``guest`` account is refused, so a
forgotten secret fails the start instead of running with a well-known password, and so is the
broker's administrator ``operator`` (deploy/rabbitmq): a service signs in as its own user.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import ClassVar, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MEBIBYTE = 1024 * 1024


SHARED_BROKER_ACCOUNTS = ("guest", "operator")
"""Broker accounts no service signs in as in production: the default one and the administrator."""


class InvalidSettings(SystemExit):
    """The environment holds settings a service refuses; the message is one line naming each
    variable and the reason, never its value (it may be a secret).

    A ``SystemExit``: an entry point that lets it escape prints that line alone and exits with
    status 1, where a pydantic ``ValidationError`` would print a traceback per process.
    """

    @classmethod
    def from_error(cls, service: str, error: ValidationError) -> InvalidSettings:
        """``"<service>: VARIABLE: reason; …"`` from the errors pydantic found."""
        problems = []
        for found in error.errors(include_url=False, include_input=False):
            variable = "_".join(str(part) for part in found["loc"]).upper()
            reason = found["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
            problems.append(f"{variable}: {reason}" if variable else reason)
        return cls(f"{service}: refused setting: " + "; ".join(problems))


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

    @classmethod
    def load(cls) -> Self:
        """This service's settings from the environment (DESIGN §7).

        Raises:
            InvalidSettings: a variable holds a value the service refuses, or production lacks one.
        """
        try:
            return cls()
        except ValidationError as error:
            raise InvalidSettings.from_error(cls.service, error) from None

    @property
    def database_name(self) -> str:
        """This service's own MongoDB database (DESIGN §1: one database per service)."""
        return f"{self.mongodb_db_prefix}{self.service}"

    @model_validator(mode="after")
    def _refuse_development_secrets_in_production(self) -> ServiceSettings:
        if self.taskflow_env is Environment.PRODUCTION and urlsplit(self.rabbitmq_url).username in (None, *SHARED_BROKER_ACCOUNTS):
            raise ValueError("RABBITMQ_URL must name the service's own broker account, not guest or operator, in production")
        return self


def check(specifications: Sequence[str]) -> list[str]:
    """Load each ``"module:SettingsClass"`` from the environment; the refusals, one line each."""
    refusals = []
    for specification in specifications:
        module, _, name = specification.partition(":")
        try:
            getattr(importlib.import_module(module), name).load()
        except InvalidSettings as refused:
            refusals.append(str(refused))
    return refusals


if __name__ == "__main__":
    # scripts/run: `python -m taskflow_common.settings taskflow_auth.settings:AuthSettings …` names
    # every refused setting once, before any process starts; exit status 2 when there is one.
    # Run as __main__, this file is a second copy of the module: the services raise the
    # InvalidSettings of the one they import, so the check must be that module's.
    found = importlib.import_module("taskflow_common.settings").check(sys.argv[1:])
    for line in found:
        print(line, file=sys.stderr)
    sys.exit(2 if found else 0)
