"""Gunicorn settings of the auth service: the shared ones, its app and port 5001 (``AUTH_PORT``)."""

from taskflow_common.serving import gunicorn_settings

globals().update(gunicorn_settings(service="auth", app="taskflow_auth:create_app()", default_port=5001))
