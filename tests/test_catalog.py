"""docs/asyncapi.yaml is a valid AsyncAPI 3.0 document that catalogs every event of DESIGN §5."""

from __future__ import annotations

import jsonschema
import pytest

from tests.support.catalog import asyncapi_schema, catalog, validate_event

DESIGN_CATALOG = {
    "user.registered", "user.updated", "user.role_changed", "user.deactivated", "user.activated",
    "user.password_changed", "user.sessions_revoked", "user.email_verification_requested", "user.email_verified",
    "user.logged_in", "task.created", "task.updated", "task.completed", "task.deleted", "notification.sent",
}


def test_the_catalog_validates_against_the_asyncapi_3_schema() -> None:
    jsonschema.Draft7Validator(asyncapi_schema()).validate(catalog())


def test_every_event_of_the_design_has_a_channel_a_message_and_an_operation() -> None:
    document = catalog()
    assert set(document["channels"]) == DESIGN_CATALOG
    assert set(document["components"]["messages"]) == DESIGN_CATALOG
    assert {operation["channel"]["$ref"].removeprefix("#/channels/") for operation in document["operations"].values()} == DESIGN_CATALOG


def test_an_event_that_breaks_its_schema_is_caught() -> None:
    good = {
        "specversion": "1.0", "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "source": "taskflow/auth",
        "type": "user.logged_in", "subject": "u1", "time": "2026-11-29T10:00:00Z", "datacontenttype": "application/json",
        "data": {"id": "u1", "email": "a@example.com", "name": "A", "role": "user", "active": True, "email_verified": True,
                 "created_at": "2026-11-29T10:00:00Z", "updated_at": "2026-11-29T10:00:00Z",
                 "last_login_at": None, "version": 1, "access_generation": 0, "actor_id": "u1"},
    }
    validate_event(good)
    with pytest.raises(jsonschema.ValidationError):
        validate_event({**good, "data": {**good["data"], "password_hash": "$2b$12$..."}})
    with pytest.raises(jsonschema.ValidationError):
        validate_event({**good, "source": "taskflow/tasks"})
