"""Gunicorn settings of the tasks service: the shared ones, its app and port 5002 (``TASKS_PORT``)."""

from taskflow_common.serving import gunicorn_settings
from taskflow_tasks.settings import TasksSettings

globals().update(gunicorn_settings(service="tasks", settings=TasksSettings, app="taskflow_tasks:create_app()", default_port=5002))
