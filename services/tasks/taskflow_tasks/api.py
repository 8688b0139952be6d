"""Routes of the tasks service under ``/api/v1/tasks`` (DESIGN §4): parse → authorize → domain → respond."""

from __future__ import annotations

from taskflow_common.api import Api

api = Api("tasks", "/api/v1/tasks", title="TaskFlow tasks", description="Each user's tasks: CRUD, filtering, search, statistics (DESIGN §4 tasks).")
