"""Settings of the notify service, read from the environment (DESIGN §7)."""

from __future__ import annotations

from typing import ClassVar

from taskflow_common.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    """The shared settings; the notify service's database is ``<MONGODB_DB_PREFIX>notify``."""

    service: ClassVar[str] = "notify"
