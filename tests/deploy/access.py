"""Who signs in to MongoDB and RabbitMQ as whom, as Compose and the Kubernetes manifests state it,
and what each account may do: deploy/mongo/users.json (which deploy/mongo/create-users.js applies)
and deploy/rabbitmq/definitions.json (which every broker node imports at boot)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from . import kube
from .repo import ROOT

MONGO_USERS = ROOT / "deploy" / "mongo" / "users.json"
BROKER = ROOT / "deploy" / "rabbitmq"
PERMISSIONS = ("configure", "write", "read")
# Compose's ${NAME:?message}: the message may hold "/" and spaces, which would break a URL apart.
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


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


def compose_url(value: str) -> SplitResult:
    """A Compose URL with each ``${NAME…}`` shortened to ``${NAME}``, so that it splits as a URL."""
    return urlsplit(_INTERPOLATION.sub(r"${\1}", value))


def compose_variable(value: str) -> str | None:
    """The variable a Compose value consists of (``${NAME:?…}`` → ``NAME``), else None."""
    match = _INTERPOLATION.fullmatch(value)
    return match.group(1) if match else None


def container_env(workload: dict[str, Any], container: str | None = None) -> list[dict[str, Any]]:
    """The env list of the named container of ``workload`` (its first container by default)."""
    template = kube.pod_template(workload)
    found = [c for c in kube.containers(template) if container is None or c["name"] == container]
    return found[0].get("env", [])


def secret_key(env: list[dict[str, Any]], name: str) -> tuple[str, str] | None:
    """(Secret, key) variable ``name`` of ``env`` is read from, or None when it is not a Secret's."""
    variable = next((v for v in env if v["name"] == name), None)
    ref = (variable or {}).get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def value(env: list[dict[str, Any]], name: str) -> str | None:
    """The literal value of variable ``name`` in ``env`` (None when absent or taken from elsewhere)."""
    return next((v.get("value") for v in env if v["name"] == name), None)


def secret_readers(resources: list[dict[str, Any]], secret: str, key: str) -> set[str]:
    """The workloads with a container that reads ``key`` of ``secret`` into a variable."""
    return {
        workload["metadata"]["name"]
        for workload in kube.workloads(resources)
        for container in kube.containers(kube.pod_template(workload))
        for variable in container.get("env", [])
        if variable.get("valueFrom", {}).get("secretKeyRef") == {"name": secret, "key": key}
    }


def defined_before(env: list[dict[str, Any]], first: str, then: str) -> bool:
    """Whether ``first`` precedes ``then`` in ``env``: kubelet expands ``$(first)`` only then."""
    names = [v["name"] for v in env]
    return first in names and then in names and names.index(first) < names.index(then)
