"""The bare Flask app of arm B2: one JSON endpoint with no token, no database and none of
TaskFlow's middleware, served on the same gunicorn settings as a service
(``bench/gunicorn_bare.py``). It is the ceiling a Flask service reaches on this machine."""

from __future__ import annotations

from flask import Flask, jsonify

TASK_LIKE = {
    "id": "65f0c0ffee0000000000beef",
    "title": "Write the benchmark report",
    "description": "",
    "status": "todo",
    "priority": "medium",
    "due_date": None,
    "tags": [],
    "owner_id": "65f0c0ffee0000000000cafe",
    "created_at": "2030-01-01T00:00:00.000Z",
    "updated_at": "2030-01-01T00:00:00.000Z",
    "completed_at": None,
    "version": 1,
}
"""A body of the size and shape of ``GET /tasks/{id}``'s."""


def create_app() -> Flask:
    app = Flask("bench_bare")

    @app.get("/bare")
    def bare():  # noqa: ANN202
        return jsonify(TASK_LIKE)

    return app
