"""Settings of the admin service, read from the environment (DESIGN §7)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from taskflow_common.settings import ServiceSettings


class AdminSettings(ServiceSettings):
    """The shared settings plus where admin reaches the internal APIs of auth and tasks.

    Attributes:
        auth_url: ``AUTH_URL``; auth's own address (not the gateway: /internal is not routed there),
            or each of its instances', comma-separated (see :class:`.upstream.ServiceClient`).
        tasks_url: ``TASKS_URL``; tasks' own address (or addresses), for the task snapshots of the backfill.
        upstream_timeout_seconds: ``UPSTREAM_TIMEOUT_SECONDS``; bound on one call to either.
    """

    service: ClassVar[str] = "admin"

    auth_url: str = "http://127.0.0.1:5001"
    tasks_url: str = "http://127.0.0.1:5002"
    upstream_timeout_seconds: float = Field(default=5.0, gt=0)
