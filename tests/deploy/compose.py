"""docker-compose.yml as Compose sees it before interpolation: YAML anchors and merge keys
resolved, ``${VARIABLE}`` references left in place."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

import yaml

from .repo import ROOT

PATH = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])[^}]*)?\}")


def load() -> dict[str, Any]:
    return yaml.safe_load(PATH.read_text())


def interpolations() -> dict[str, set[str]]:
    """Each variable the file interpolates → the operators used with it ('' for a bare reference)."""
    found: dict[str, set[str]] = {}
    for name, operator in INTERPOLATION.findall(PATH.read_text()):
        found.setdefault(name, set()).add(operator)
    return found


def env_example() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def url(value: str) -> SplitResult:
    """A URL with each ``${NAME…}`` in it shortened to ``${NAME}``: the message of ``${NAME:?…}`` may
    hold "/" and spaces, which would break the URL apart."""
    return urlsplit(INTERPOLATION.sub(r"${\1}", value))


def variable(value: str) -> str | None:
    """The variable a value consists of (``${NAME:?…}`` → ``NAME``), else None."""
    match = INTERPOLATION.fullmatch(value)
    return match.group(1) if match else None
