"""Idempotent creation of tasks: ``POST /tasks`` with an ``Idempotency-Key`` header creates its
task at most once however often a client sends it again after a lost answer (a network error, or
the gateway's 502 when an instance died mid-request; neither nginx nor Kong resends a POST it has
sent) (IETF draft-ietf-httpapi-idempotency-key-header-06).

The first request with a key reserves a task id for it: one unique record per owner and key,
kept :data:`RETENTION`, with the request's fingerprint. Every try creates the task under that id,
so the task's own unique ``_id`` makes the write happen once, with its events (outbox) and its
counters in the same protocol as any create. A try that finds the task there answers with it, as
the first try did (201, its current representation), whether the first answer was lost or is
still on its way. The same key with another request body is refused (422, draft §2.7); a key
whose task was deleted since is answered 409.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from taskflow_common.expiry import Expiry
from taskflow_common.problems import BadRequest, Conflict, ValidationFailed

from .errors import TaskNotFound
from .schemas import TaskCreate
from .store import PLACEHOLDER_FIELD, TaskIdTaken, VersionConflict
from .tasks import MAX_WRITE_ATTEMPTS, Tasks

KEYS = "idempotency_keys"
RETENTION = timedelta(hours=24)
"""How long a key is remembered: a retry later than this creates a new task."""
EXPIRIES = (Expiry(KEYS, "created_at", RETENTION),)
KEY = re.compile(r"[\x21-\x7e]{1,255}")
"""A key: 1 to 255 visible ASCII characters (a UUID is the usual choice)."""


def key_of(header: str | None) -> str | None:
    """The ``Idempotency-Key`` of a request (None without one); a quoted structured-field string
    (draft §2.1, RFC 8941) or the bare text are both taken.

    Raises:
        BadRequest: the key is empty, too long or not visible ASCII.
    """
    if header is None:
        return None
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not KEY.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters.")
    return key


def fingerprint(body: TaskCreate) -> str:
    """What makes two requests with one key the same request: the SHA-256 of the validated body."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class KeyReused(ValidationFailed):
    """The key was used before with another request body (draft §2.7)."""

    type = "urn:taskflow:problem:idempotency-key-reused"
    title = "Idempotency key reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used for another request; use a new key for a new task.")


class KeyedTaskDeleted(Conflict):
    """The key's task was created, then deleted: the request was applied, its task is gone."""

    def __init__(self) -> None:
        super().__init__("The task created with this Idempotency-Key has been deleted since.")


class IdempotentCreates:
    """Creates tasks under idempotency keys.

    Args:
        db: the tasks service's database, resolved per call.
        tasks: the tasks domain.
        clock: the current time (UTC).
    """

    def __init__(self, db: Callable[[], Database], tasks: Tasks, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._db = db
        self.tasks = tasks
        self.clock = clock

    def create(self, owner_id: str, key: str, body: TaskCreate) -> dict[str, Any]:
        """The task of ``key``: created now, or as an earlier request with that key created it.

        Raises:
            KeyReused: ``key`` came with another body before.
            KeyedTaskDeleted: the key's task was deleted since.
            VersionConflict: the owner's tasks kept changing under ``MAX_WRITE_ATTEMPTS`` attempts.
        """
        record = self._reserve(owner_id, key, fingerprint(body))
        task_id = record["task_id"]
        if record.get("created"):
            return self._created(owner_id, task_id)
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                task = self.tasks.create(owner_id, body, task_id=task_id)
            except TaskIdTaken:
                stored = self.tasks.tasks.stored(task_id)
                if stored is None or not stored.get(PLACEHOLDER_FIELD):
                    return self._created(owner_id, task_id)
                task_id = self._move(owner_id, key, task_id)  # fenced off: that try's task was never written
                continue
            self._db()[KEYS].update_one({"_id": record["_id"]}, {"$set": {"created": True}})
            return task
        raise VersionConflict()

    def _created(self, owner_id: str, task_id: ObjectId) -> dict[str, Any]:
        """The task an earlier try with the key created, or :class:`KeyedTaskDeleted`."""
        try:
            return self.tasks.get(owner_id, str(task_id))
        except TaskNotFound:
            raise KeyedTaskDeleted() from None

    def _reserve(self, owner_id: str, key: str, request: str) -> dict[str, Any]:
        """The key's record (``task_id``, ``created`` once its task was written), made now if new."""
        def reserve() -> dict[str, Any]:
            return self._db()[KEYS].find_one_and_update(
                {"_id": f"{owner_id}:{key}"},
                {"$setOnInsert": {"fingerprint": request, "task_id": ObjectId(), "created_at": self.clock()}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )

        try:
            record = reserve()
        except DuplicateKeyError:  # a concurrent try with the key inserted it first: now it is found
            record = reserve()
        if record["fingerprint"] != request:
            raise KeyReused()
        return record

    def _move(self, owner_id: str, key: str, fenced: ObjectId) -> ObjectId:
        """A new id for the key in place of ``fenced`` (or the one a concurrent try moved it to)."""
        self._db()[KEYS].update_one({"_id": f"{owner_id}:{key}", "task_id": fenced}, {"$set": {"task_id": ObjectId()}})
        return self._db()[KEYS].find_one({"_id": f"{owner_id}:{key}"})["task_id"]
