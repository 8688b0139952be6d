"""The events the tasks service emits (DESIGN §5): ``task.*``, each carrying the task's snapshot
and ``actor_id``; and what it consumes: ``user.deactivated`` / ``user.activated``, handled by the
shared :class:`~taskflow_common.deactivation.DeactivatedUsers` (its ``handle_user_*`` methods) so
that a deactivated owner's still-valid tokens are refused here too. The tasks themselves stay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskflow_common.events.envelope import Event
from taskflow_common.events.plumbing import ServiceEvents

from .schemas import Task


def snapshot(task: Mapping[str, Any]) -> dict[str, Any]:
    """The public fields of a stored task, as JSON (the ``TaskData`` of docs/asyncapi.yaml)."""
    return Task.from_document(dict(task)).model_dump(mode="json")


class TaskEvents:
    """Builds each ``task.*`` event from the task as it is *after* the change."""

    def __init__(self, events: ServiceEvents) -> None:
        self._events = events

    def _event(self, type: str, task: Mapping[str, Any], actor_id: str, **extra: Any) -> Event:
        return self._events.event(type, str(task["_id"]), {**snapshot(task), **extra}, actor_id)

    def created(self, task: Mapping[str, Any], actor_id: str) -> Event:
        return self._event("task.created", task, actor_id)

    def updated(self, task: Mapping[str, Any], changed: Sequence[str], actor_id: str) -> Event:
        return self._event("task.updated", task, actor_id, changed=list(changed))

    def completed(self, task: Mapping[str, Any], actor_id: str) -> Event:
        return self._event("task.completed", task, actor_id)

    def deleted(self, task: Mapping[str, Any], actor_id: str) -> Event:
        """The task as it was, at the version its deletion made (one above its last change)."""
        return self._event("task.deleted", task, actor_id)
