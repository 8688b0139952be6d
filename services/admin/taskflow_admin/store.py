"""Every MongoDB query of the admin service, with the indexes they need declared in one place.

Admin owns no users or tasks; it keeps read models of them, fed by events (see :mod:`.events`):
``users`` (the newest snapshot of each user, plus ``last_login_at``), ``tasks`` (each task's
owner, status and due date, and whether it was deleted) and ``audit`` (one entry per event,
keeping the event's data so the read models can be rebuilt from it). ``search`` is the users'
trigram index (see :mod:`.search`). ``meta`` remembers whether the users were backfilled from auth and whether every user is in the
search index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from bson import Int64
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError
from taskflow_common.events.consumer import PROCESSED
from taskflow_common.events.envelope import owner
from taskflow_common.mongo import Indexes
from taskflow_common.projections import DUPLICATE_KEY, apply_all_if_newer, apply_if_newer

from . import search
from .parking import parked_messages

USERS = "users"
TASKS = "tasks"
AUDIT = "audit"
SEARCH = "search"
META = "meta"
STATUSES = ("todo", "in_progress", "done")
CANDIDATES = 1000
"""The most users a search reads by the trigram index (one ``_id`` ``$in``); a ``q`` whose probed
trigrams each belong to more users is searched by the regex over every user."""
PROBES = 16
"""How many of ``q``'s trigrams a search counts the postings of, at most, spread over ``q``."""
FEW = 32
"""Candidates few enough that reading them costs less than counting another trigram's postings:
a search stops probing at a trigram held by at most this many users."""
SEARCH_MARK = "search-index"

INDEXES = (
    Indexes(USERS, (
        IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("role", ASCENDING), ("active", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("active", ASCENDING), ("created_at", DESCENDING)]),
    )),
    Indexes(TASKS, (
        IndexModel([("owner_id", ASCENDING), ("deleted", ASCENDING)]),
        IndexModel([("deleted", ASCENDING), ("status", ASCENDING), ("due_date", ASCENDING)]),
    )),
    Indexes(SEARCH, (
        IndexModel([("trigram", ASCENDING)]),
        IndexModel([("user_id", ASCENDING), ("version", ASCENDING)]),
    )),
    Indexes(AUDIT, (
        IndexModel([("time", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("type", ASCENDING), ("time", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("actor_id", ASCENDING), ("time", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("subject_id", ASCENDING), ("time", DESCENDING), ("_id", DESCENDING)]),
    )),
)


def _task_fields(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What the read model keeps of a task's snapshot."""
    return {"owner_id": snapshot["owner_id"], "status": snapshot["status"], "due_date": snapshot["due_date"]}


class ReadModels:
    """The admin service's read models and audit log, on the database ``db()`` returns."""

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db
        self._searchable = False

    # -- users ---------------------------------------------------------------------------------

    def apply_user(self, snapshot: dict[str, Any]) -> None:
        """Keep the newest snapshot of a user, and the latest login time whatever the version."""
        users = self._db()[USERS]
        fields = {key: snapshot[key] for key in ("email", "name", "role", "active", "created_at")}
        apply_if_newer(users, snapshot["id"], snapshot["version"], fields)
        if snapshot.get("last_login_at") is not None:
            users.update_one(
                {"_id": snapshot["id"], "$or": [{"last_login_at": None}, {"last_login_at": {"$lt": snapshot["last_login_at"]}}]},
                {"$set": {"last_login_at": snapshot["last_login_at"]}},
            )
        self._index_for_search(snapshot["id"])

    def _index_for_search(self, user_id: str) -> None:
        """Make ``search`` hold the trigrams of the user's stored email and name.

        Postings are keyed by user, version and trigram, so writing them again inserts nothing new.
        Once the new ones are in, the user's ``searched`` field (their folded email and name) is
        set if the user is still at that version, and only then are their postings of earlier
        versions deleted; a user whose ``searched`` equals their text is skipped. So a crash, or
        events of one user indexed at once in any order, leave at most postings too many (a search
        reads a superset anyway), never one missing for the stored email and name.
        """
        db = self._db()
        user = db[USERS].find_one({"_id": user_id}, {"email": 1, "name": 1, "version": 1, "searched": 1})
        if user is None:
            return
        text = search.folded(f"{user['email']}\n{user['name']}")
        if user.get("searched") == text:
            return
        version = user["version"]
        postings = [{"_id": f"{user_id}\n{version}\n{trigram}", "user_id": user_id, "version": version, "trigram": trigram}
                    for trigram in search.trigrams(user["email"]) | search.trigrams(user["name"])]
        try:
            db[SEARCH].insert_many(postings, ordered=False)
        except BulkWriteError as error:
            if any(failure["code"] != DUPLICATE_KEY for failure in error.details["writeErrors"]):
                raise
        if db[USERS].update_one({"_id": user_id, "version": version}, {"$set": {"searched": text}}).matched_count:
            db[SEARCH].delete_many({"user_id": user_id, "version": {"$lt": version}})

    def index_existing_users(self) -> int:
        """Index for search, once, the users stored before the search index existed (their
        ``searched`` is missing), then mark the index whole; returns how many were indexed.

        Until the mark is set, :meth:`candidates` answers None (every search is the regex over
        every user). Users stored meanwhile are indexed as they are applied. Idempotent.
        """
        if self.searchable():
            return 0
        indexed = 0
        for user in self._db()[USERS].find({}, {"email": 1, "name": 1, "searched": 1}):
            if user.get("searched") != search.folded(f"{user['email']}\n{user['name']}"):
                self._index_for_search(user["_id"])
                indexed += 1
        self._mark_searchable()
        return indexed

    def searchable(self) -> bool:
        """Whether every stored user is in the search index (see :meth:`index_existing_users`)."""
        if not self._searchable:
            self._searchable = self._db()[META].find_one({"_id": SEARCH_MARK}) is not None
        return self._searchable

    def _mark_searchable(self) -> None:
        self._db()[META].update_one({"_id": SEARCH_MARK}, {"$set": {"at": datetime.now(UTC)}}, upsert=True)

    def candidates(self, q: str) -> list[str] | None:
        """Ids of a superset of the users whose email or name holds ``q`` (at most
        :data:`CANDIDATES`), read by the trigram index; None when the index cannot narrow the
        search that far.

        Up to :data:`PROBES` of ``q``'s trigrams, spread over it, are counted in ``q``'s order, each
        count stopping at the rarest one's so far (counting further tells nothing), until one held by
        at most :data:`FEW` users; the users of the rarest one are the candidates.
        """
        grams = search.query_trigrams(q)
        if not grams or not self.searchable():
            return None
        probed = grams if len(grams) <= PROBES else [grams[i * (len(grams) - 1) // (PROBES - 1)] for i in range(PROBES)]
        postings = self._db()[SEARCH]
        rarest, held = None, CANDIDATES + 1
        for trigram in probed:
            count = postings.count_documents({"trigram": trigram}, limit=held)
            if count < held:
                rarest, held = trigram, count
                if held <= FEW:
                    break
        if rarest is None:
            return None
        return sorted({posting["user_id"] for posting in postings.find({"trigram": rarest}, {"user_id": 1, "_id": 0})})

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self._db()[USERS].find_one({"_id": user_id})

    def users(self, *, q: str | None, role: str | None, active: bool | None, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Users newest first, filtered; and how many match."""
        query: dict[str, Any] = {}
        if role is not None:
            query["role"] = role
        if active is not None:
            query["active"] = active
        if q is not None:
            pattern = {"$regex": re.escape(q), "$options": "i"}
            query["$or"] = [{"email": pattern}, {"name": pattern}]
            candidates = self.candidates(q)
            if candidates is not None:
                query["_id"] = {"$in": candidates}
        users = self._db()[USERS].find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        if "_id" in query:  # at most CANDIDATES matches: read once, counted here
            matches = list(users)
            return matches[skip:skip + limit], len(matches)
        return list(users.skip(skip).limit(limit)), self._db()[USERS].count_documents(query)

    def task_counts(self, owner_ids: list[str]) -> dict[str, int]:
        """Live (not deleted) tasks per owner, for the given owners."""
        if not owner_ids:
            return {}
        grouped = self._db()[TASKS].aggregate([
            {"$match": {"owner_id": {"$in": owner_ids}, "deleted": False}},
            {"$group": {"_id": "$owner_id", "count": {"$sum": 1}}},
        ])
        return {row["_id"]: row["count"] for row in grouped}

    # -- tasks ---------------------------------------------------------------------------------

    def apply_live_tasks(self, snapshots: list[dict[str, Any]]) -> None:
        """:meth:`apply_task` for a page of live tasks' snapshots, in one bulk write."""
        apply_all_if_newer(self._db()[TASKS], (
            (snapshot["id"], snapshot["version"], {**_task_fields(snapshot), "deleted": False}) for snapshot in snapshots
        ))

    def apply_task(self, snapshot: dict[str, Any], *, deleted: bool) -> None:
        """Keep the newest state of a task; a deletion is final whatever the versions."""
        tasks = self._db()[TASKS]
        fields = _task_fields(snapshot)
        if not deleted:
            apply_if_newer(tasks, snapshot["id"], snapshot["version"], {**fields, "deleted": False})
            return
        tasks.update_one({"_id": snapshot["id"]}, {"$set": {**fields, "deleted": True}, "$max": {"version": snapshot["version"]}}, upsert=True)

    # -- statistics ----------------------------------------------------------------------------

    def stats(self, now: datetime) -> dict[str, Any]:
        db = self._db()
        users, tasks = db[USERS], db[TASKS]
        by_status = {status: tasks.count_documents({"deleted": False, "status": status}) for status in STATUSES}
        return {
            "users": {
                "total": users.count_documents({}),
                "active": users.count_documents({"active": True}),
                "admins": users.count_documents({"role": "admin"}),
            },
            "tasks": {
                "total": sum(by_status.values()),
                "by_status": by_status,
                "overdue": tasks.count_documents(
                    {"deleted": False, "status": {"$in": ["todo", "in_progress"]}, "due_date": {"$lt": now}}
                ),
            },
            "events": {
                "processed": db[PROCESSED].count_documents({}),
                "dead_lettered": parked_messages(db),
            },
        }

    # -- audit ---------------------------------------------------------------------------------

    def record(self, entry: dict[str, Any]) -> bool:
        """Insert the audit entry of one event (``_id`` its id, ``source`` its source); False when
        that event is recorded already.

        An event is its ``source`` and ``id`` together (CloudEvents 1.0: only the pair is unique),
        so an id held by another source's entry (a service's own event under an id another one
        used, by chance or to push that one out of the log) does not make this one a repeat: it is
        recorded under :func:`pair_key`, with its id in ``event_id``.
        """
        audit = self._db()[AUDIT]
        try:
            audit.insert_one(entry)
            return True
        except DuplicateKeyError:
            holder = audit.find_one({"_id": entry["_id"]}, {"source": 1, "type": 1})
        if holder is not None and _source(holder) == entry["source"]:
            return False
        try:
            audit.insert_one({**entry, "_id": pair_key(entry["source"], entry["_id"]), "event_id": entry["_id"]})
            return True
        except DuplicateKeyError:
            return False

    def audit(self, query: dict[str, Any], *, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Audit entries newest first, filtered; and how many match."""
        audit = self._db()[AUDIT]
        found = audit.find(query, {"data": 0}).sort([("time", DESCENDING), ("_id", DESCENDING)]).skip(skip).limit(limit)
        return list(found), audit.count_documents(query)

    def recorded_events(self) -> Iterator[dict[str, Any]]:
        """Every audit entry with its data, oldest first (to rebuild the read models)."""
        return self._db()[AUDIT].find({}).sort([("time", ASCENDING), ("_id", ASCENDING)])

    # -- backfill and rebuild ------------------------------------------------------------------

    def backfilled(self) -> bool:
        return self._db()[META].find_one({"_id": "users-backfill"}) is not None

    def mark_backfilled(self) -> None:
        self._db()[META].update_one({"_id": "users-backfill"}, {"$set": {"at": datetime.now(UTC)}}, upsert=True)

    def clear(self) -> None:
        """Drop the read models (not the audit log) and the backfill mark."""
        db = self._db()
        for name in (USERS, SEARCH, TASKS, META):
            db.drop_collection(name)
        self._mark_searchable()  # no users, none missing from the index; replayed ones are indexed


def pair_key(source: str, event_id: str) -> Int64:
    """The audit key of an event whose id another source's entry holds: the first 8 bytes of the
    SHA-256 of ``source``, NUL, ``event_id``, as a signed 64-bit integer.

    No event can take it first: an event id is a string, and a number is neither equal to a string
    on MongoDB nor the same JSON text in FerretDB's ``_id`` index (where an ObjectId and its hex
    string are one key). A document key would be an odd type for FerretDB's typed indexes, which
    turns every sorted read of the whole log into a full sort
    (scripts/patches/ferretdb-v1.24.2-sqlite-typed-keys.patch)."""
    return Int64(int.from_bytes(hashlib.sha256(f"{source}\0{event_id}".encode()).digest()[:8], "big", signed=True))


def _source(entry: dict[str, Any]) -> str | None:
    """The source of an audited event: its entry's ``source``, or for an entry recorded before
    entries kept it (2026-12-04), its type's owner, the only source admin's consumer accepts a
    type from (:func:`taskflow_common.events.envelope.forged`)."""
    return entry.get("source") or owner(entry["type"])
