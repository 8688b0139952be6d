"""Error tracking with Sentry, only when ``SENTRY_DSN`` is set (nothing is loaded otherwise)."""

from __future__ import annotations

import os


def configure_error_tracking(service: str, *, environment: str) -> bool:
    """Report unhandled errors to Sentry if ``SENTRY_DSN`` is set; returns whether it is on.

    No personal data is sent (``send_default_pii`` off) and no traces (OpenTelemetry has those).
    """
    dsn = os.environ.get("SENTRY_DSN")
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        server_name=f"taskflow-{service}",
        send_default_pii=False,
        traces_sample_rate=0.0,
        integrations=[FlaskIntegration()],
    )
    return True
