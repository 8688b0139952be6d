"""Settings of the auth service, read from the environment (DESIGN §7)."""

from __future__ import annotations

from typing import ClassVar

from taskflow_common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    """The shared settings; the auth service's database is ``<MONGODB_DB_PREFIX>auth``."""

    service: ClassVar[str] = "auth"
