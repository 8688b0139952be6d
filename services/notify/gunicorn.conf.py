"""Gunicorn settings of the notify service: the shared ones, its settings, app and port 5004 (``NOTIFY_PORT``)."""

from taskflow_common.serving import gunicorn_settings

globals().update(
    gunicorn_settings(
        service="notify",
        settings="taskflow_notify.settings:NotifySettings",
        app="taskflow_notify:create_app()",
        default_port=5004,
    )
)
