"""The arms B1–B8 of issue 11 and B9 of issue 21, one module each; every ``run(bench)`` returns its report entry
(see :func:`entry`)."""

from __future__ import annotations

from typing import Any

from ..context import load_average
from ..figures import Target


def entry(
    arm: str,
    title: str,
    *,
    method: str,
    tool: str,
    concurrency: str,
    duration: str,
    data: str,
    handler: str,
    measurements: dict[str, Any],
    checks: list[tuple[Target, float]],
    notes: str = "",
) -> dict[str, Any]:
    """One arm's report entry: how it was measured, what it measured, and each target's verdict."""
    return {
        "arm": arm,
        "title": title,
        "method": method,
        "tool": tool,
        "concurrency": concurrency,
        "duration": duration,
        "data": data,
        "ferretdb_handler": handler,
        "measurements": measurements,
        "checks": [target.check(value) for target, value in checks],
        "load_average_after": load_average(),
        "notes": notes,
    }
