"""The API documentation page's own Content-Security-Policy (taskflow_common.docs)."""

from __future__ import annotations

from flask import Flask
from taskflow_common.docs import docs_blueprint


def test_every_html_file_of_the_docs_gets_a_policy_and_none_fails() -> None:
    app = Flask(__name__)
    app.register_blueprint(docs_blueprint({"auth": "/api/v1/auth/openapi.json"}))
    client = app.test_client()

    page = client.get("/api/v1/docs/")
    assert page.status_code == 200 and "'sha256-" in page.headers["Content-Security-Policy"]

    with client.get("/api/v1/docs/oauth2-redirect.html") as sent_as_is:  # a file the package serves unread
        assert sent_as_is.status_code == 200
        assert "script-src 'self';" in sent_as_is.headers["Content-Security-Policy"]  # its inline script blocked
