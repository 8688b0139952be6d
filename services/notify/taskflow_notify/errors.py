"""What can go wrong in notify's API, as problem details (RFC 9457); raised by the domain, mapped once."""

from __future__ import annotations

from taskflow_common.problems import NotFound


class NotificationNotFound(NotFound):
    """Unknown, malformed or someone else's id: the same 404, so existence is not leaked (DESIGN §3)."""

    def __init__(self) -> None:
        super().__init__("No such notification.")
