"""Gunicorn settings of the tasks service: the shared ones, its settings, app and port 5002 (``TASKS_PORT``)."""

from taskflow_common.serving import gunicorn_settings

globals().update(
    gunicorn_settings(
        service="tasks",
        settings="taskflow_tasks.settings:TasksSettings",
        app="taskflow_tasks:create_app()",
        default_port=5002,
    )
)
