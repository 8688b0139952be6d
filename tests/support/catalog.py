"""The event catalog, docs/asyncapi.yaml, as a validator of real events."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from .processes import ROOT

CATALOG = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_SCHEMA = ROOT / ".tools" / "npm" / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"
_BASE = "urn:taskflow:asyncapi"


@functools.cache
def catalog() -> dict[str, Any]:
    return yaml.safe_load(CATALOG.read_text())


def asyncapi_schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON Schema (installed by scripts/bootstrap)."""
    return json.loads(Path(ASYNCAPI_SCHEMA).read_text())


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(_BASE, Resource(contents=catalog(), specification=DRAFT7))


def validate_event(body: bytes | dict[str, Any]) -> dict[str, Any]:
    """Validate one published event against the payload schema of its type; returns it parsed.

    Raises:
        KeyError: the catalog has no message of the event's type.
        jsonschema.ValidationError: the event does not match its schema.
    """
    event = json.loads(body) if isinstance(body, bytes) else body
    catalog()["components"]["messages"][event["type"]]  # noqa: B018 (KeyError for an uncatalogued type)
    validator = jsonschema.Draft7Validator(
        {"$ref": f"{_BASE}#/components/messages/{event['type']}/payload"},
        registry=_registry(),
        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
    )
    validator.validate(event)
    return event
