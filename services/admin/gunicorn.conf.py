"""Gunicorn settings of the admin service: the shared ones, its settings, app and port 5003 (``ADMIN_PORT``)."""

from taskflow_common.serving import gunicorn_settings

globals().update(
    gunicorn_settings(
        service="admin",
        settings="taskflow_admin.settings:AdminSettings",
        app="taskflow_admin:create_app()",
        default_port=5003,
    )
)
