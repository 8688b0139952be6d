"""Gunicorn settings of arm B2's bare Flask app: a service's shared settings (worker class,
workers, threads, post_fork set-up), its app and ``BARE_PORT``."""

from taskflow_common.serving import gunicorn_settings

globals().update(gunicorn_settings(service="bare", app="bench.bare:create_app()", default_port=5090))
