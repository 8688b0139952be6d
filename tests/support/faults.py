"""Faults injected into one call of our own code, where the real dependency cannot be made to
fail at that exact step (the database failing after the server accepted an email)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def failing_first(times: float, error: Exception, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, whose first ``times`` calls raise ``error`` (``float("inf")``: every call)."""
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise error
        return function(*args, **kwargs)

    return wrapped
