"""Settings come from the environment and refuse development secrets in production."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import ValidationError
from taskflow_common.settings import ServiceSettings


class Sample(ServiceSettings):
    service: ClassVar[str] = "sample"


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("MONGODB_DB_PREFIX", "staging_")
    settings = Sample()
    assert settings.mongodb_uri == "mongodb://db.example:27017/"
    assert settings.database_name == "staging_sample"


def test_production_refuses_the_brokers_guest_account() -> None:
    with pytest.raises(ValidationError, match="guest"):
        Sample(taskflow_env="production", rabbitmq_url="amqp://guest:guest@rabbitmq:5672/%2F")
    assert Sample(taskflow_env="production", rabbitmq_url="amqp://taskflow:s3cret@rabbitmq:5672/%2F")


def test_a_rejected_value_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ValidationError) as raised:
        Sample(mongodb_db_prefix="bad prefix with hunter2-password!")
    assert "hunter2" not in str(raised.value)
