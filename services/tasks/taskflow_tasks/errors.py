"""What can go wrong in the tasks service, as problem details (RFC 9457); raised by the domain, mapped once."""

from __future__ import annotations

from taskflow_common.problems import NotFound, PreconditionFailed


class TaskNotFound(NotFound):
    """Unknown id, malformed id and another user's task alike: existence is not leaked (DESIGN §3)."""

    def __init__(self) -> None:
        super().__init__("No such task.")


class TaskVersionMismatch(PreconditionFailed):
    """``If-Match`` names another version than the task's current one (RFC 9110 §13.1.1); the
    response carries the current ``ETag`` so the client can re-read and retry."""

    type = "urn:taskflow:problem:version-mismatch"
    title = "Task version mismatch"

    def __init__(self, current_etag: str) -> None:
        super().__init__("The task has changed since that version; fetch it again.", headers={"ETag": current_etag})
