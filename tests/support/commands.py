"""A pymongo command listener for tests that count or inspect what a client sends."""

from __future__ import annotations

from typing import Any

from pymongo import monitoring


class Commands(monitoring.CommandListener):
    """Every command a client started, in order, as ``{"name": ..., **body}`` (``body[name]`` is
    the collection for the CRUD commands); with ``database``, only those sent to it. Pass it in
    ``event_listeners``."""

    def __init__(self, database: str | None = None) -> None:
        self.database = database
        self.sent: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.database in (None, event.database_name):
            self.sent.append({"name": event.command_name, **event.command})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def calls(self) -> list[tuple[str, Any]]:
        """``(name, collection)`` of each command, in order."""
        return [(command["name"], command.get(command["name"])) for command in self.sent]

    def to(self, collection: str, name: str | None = None) -> list[dict[str, Any]]:
        """The commands sent to ``collection`` (only those named ``name``, if given)."""
        return [command for command in self.sent
                if command.get(command["name"]) == collection and name in (None, command["name"])]

    def names(self, collection: str) -> list[str]:
        """The names of the commands sent to ``collection``, in order."""
        return [command["name"] for command in self.to(collection)]
