"""Routes of the admin service under ``/api/v1/admin`` (DESIGN §4): parse → authorize → domain → respond."""

from __future__ import annotations

from taskflow_common.api import Api

api = Api("admin", "/api/v1/admin", title="TaskFlow admin", description="User management, system statistics and the audit log, built from events (DESIGN §4 admin).")
