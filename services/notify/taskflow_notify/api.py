"""Routes of the notify service under ``/api/v1/notifications`` (DESIGN §4): parse → authorize → domain → respond."""

from __future__ import annotations

from taskflow_common.api import Api

api = Api("notify", "/api/v1/notifications", title="TaskFlow notify", description="The in-app inbox, email and due-date reminders, driven by events (DESIGN §4 notify).")
