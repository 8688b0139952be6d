"""What each MongoDB and RabbitMQ account may do: deploy/mongo/users.json (which
deploy/mongo/create-users.js applies) and deploy/rabbitmq/definitions.json (which every broker node
imports at boot)."""

from __future__ import annotations

import json
import re
from typing import Any

from .repo import ROOT

MONGO_USERS = ROOT / "deploy" / "mongo" / "users.json"
BROKER = ROOT / "deploy" / "rabbitmq"
PERMISSIONS = ("configure", "write", "read")


def mongo_roles() -> dict[str, list[dict[str, str]]]:
    """MongoDB user → the roles deploy/mongo/create-users.js gives it."""
    return json.loads(MONGO_USERS.read_text())


def broker_definitions() -> dict[str, Any]:
    """deploy/rabbitmq/definitions.json as committed: passwords are ``${RABBITMQ_<USER>_PASSWORD}``."""
    return json.loads((BROKER / "definitions.json").read_text())


def broker_permissions(user: str) -> dict[str, re.Pattern[str]]:
    """configure, write and read → the pattern of ``user`` on the vhost ``/``."""
    (found,) = [p for p in broker_definitions()["permissions"] if p["user"] == user and p["vhost"] == "/"]
    return {kind: re.compile(found[kind]) for kind in PERMISSIONS}


def broker_grants(pattern: re.Pattern[str], resource: str) -> bool:
    """Whether a permission pattern covers ``resource``: RabbitMQ matches it anywhere in the name
    (Erlang's ``re:run``, unanchored), and names the default exchange ``amq.default``."""
    return pattern.search(resource) is not None
