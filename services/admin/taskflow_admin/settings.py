"""Settings of the admin service, read from the environment (DESIGN §7)."""

from __future__ import annotations

from typing import ClassVar

from taskflow_common.settings import ServiceSettings


class AdminSettings(ServiceSettings):
    """The shared settings; the admin service's database is ``<MONGODB_DB_PREFIX>admin``."""

    service: ClassVar[str] = "admin"
