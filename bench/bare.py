"""The bare Flask app of arm B2: JSON endpoints with no token, no middleware and none of
TaskFlow's layers, served on the same gunicorn settings as a service (``bench/gunicorn_bare.py``).

- ``GET /bare``: a constant body of the size and shape of ``GET /tasks/{id}``'s, the ceiling a
  Flask service reaches on this machine;
- ``GET /bare/db/<task_id>``: the same after one ``find_one({_id})`` of that task in the tasks
  service's database (``MONGODB_URI``, ``MONGODB_DB_PREFIX``), what one FerretDB read costs a
  Flask endpoint with nothing else around it.
"""

from __future__ import annotations

import os

from bson import ObjectId
from flask import Flask, jsonify
from taskflow_common.mongo import Mongo

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
    """The bare app; its database is the tasks service's, read only."""
    app = Flask("bench_bare")
    mongo = Mongo(os.environ["MONGODB_URI"], f"{os.environ.get('MONGODB_DB_PREFIX', 'taskflow_')}tasks",
                  app_name="taskflow-bench-bare")

    @app.get("/bare")
    def bare():  # noqa: ANN202
        return jsonify(TASK_LIKE)

    @app.get("/bare/db/<task_id>")
    def bare_db(task_id: str):  # noqa: ANN202
        found = mongo.db["tasks"].find_one({"_id": ObjectId(task_id)}, {"_outbox": 0})
        return jsonify({**TASK_LIKE, "id": str(found["_id"]), "title": found["title"], "version": found["version"]})

    return app
