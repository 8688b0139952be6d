"""Settings of the admin service, read from the environment (DESIGN §7)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from taskflow_common.settings import ServiceSettings


class AdminSettings(ServiceSettings):
    """The shared settings plus where admin reaches auth's internal API.

    Attributes:
        auth_url: ``AUTH_URL``; auth's own address (not the gateway: /internal is not routed there).
        upstream_timeout_seconds: ``UPSTREAM_TIMEOUT_SECONDS``; bound on one call to auth.
    """

    service: ClassVar[str] = "admin"

    auth_url: str = "http://127.0.0.1:5001"
    upstream_timeout_seconds: float = Field(default=5.0, gt=0)
