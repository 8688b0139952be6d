"""Settings of the tasks service, read from the environment (DESIGN §7)."""

from __future__ import annotations

from typing import ClassVar

from taskflow_common.settings import ServiceSettings


class TasksSettings(ServiceSettings):
    """The shared settings; the tasks service's database is ``<MONGODB_DB_PREFIX>tasks``."""

    service: ClassVar[str] = "tasks"
