"""Gunicorn settings of the auth service: the shared ones, its settings, app and port 5001 (``AUTH_PORT``).

gthread, not the shared gevent default: a login's bcrypt check keeps a core busy for ~0.3 s and
releases the GIL, so threads hash in parallel while a gevent worker would stall its other requests.
"""

from taskflow_common.serving import gunicorn_settings

globals().update(
    gunicorn_settings(
        service="auth",
        settings="taskflow_auth.settings:AuthSettings",
        app="taskflow_auth:create_app()",
        default_port=5001,
        worker_class="gthread",
    )
)
