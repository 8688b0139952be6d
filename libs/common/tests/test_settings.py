"""Settings come from the environment and refuse development secrets in production."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import ValidationError
from taskflow_common.settings import InvalidSettings, ServiceSettings, check


class Sample(ServiceSettings):
    service: ClassVar[str] = "sample"


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("MONGODB_DB_PREFIX", "staging_")
    settings = Sample()
    assert settings.mongodb_uri == "mongodb://db.example:27017/"
    assert settings.database_name == "staging_sample"


@pytest.mark.parametrize("account", ["guest", "operator"])
def test_production_refuses_the_brokers_guest_and_administrator_accounts(account: str) -> None:
    with pytest.raises(ValidationError, match="guest or operator"):
        Sample(taskflow_env="production", rabbitmq_url=f"amqp://{account}:s3cret@rabbitmq:5672/%2F")
    assert Sample(taskflow_env="production", rabbitmq_url="amqp://taskflow:s3cret@rabbitmq:5672/%2F")


def test_a_rejected_value_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ValidationError) as raised:
        Sample(mongodb_db_prefix="bad prefix with hunter2-password!")
    assert "hunter2" not in str(raised.value)


def test_load_names_each_refused_variable_in_one_line_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "-1")
    monkeypatch.setenv("MONGODB_DB_PREFIX", "bad prefix hunter2")
    with pytest.raises(InvalidSettings) as raised:
        Sample.load()
    message = str(raised.value)
    assert message.startswith("sample: refused setting: ")
    assert "MAX_BODY_BYTES: Input should be greater than 0" in message
    assert "MONGODB_DB_PREFIX: String should match pattern" in message
    assert "\n" not in message and "hunter2" not in message
    assert isinstance(raised.value, SystemExit)


def test_load_states_a_rule_between_variables_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFLOW_ENV", "production")
    refusal = r"^sample: refused setting: RABBITMQ_URL must name the service's own broker account, not guest or operator, in production$"
    with pytest.raises(InvalidSettings, match=refusal):
        Sample.load()


def test_check_reports_every_refusing_service_and_passes_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "0")
    refusals = check([f"{__name__}:Sample", "taskflow_common.settings:ServiceSettings"])
    assert refusals == [
        "sample: refused setting: MAX_BODY_BYTES: Input should be greater than 0",
        "service: refused setting: MAX_BODY_BYTES: Input should be greater than 0",
    ]
    monkeypatch.delenv("MAX_BODY_BYTES")
    assert check([f"{__name__}:Sample"]) == []
