"""Read models kept from events that arrive in any order (DESIGN §5: no order promised).

Every snapshot in a ``user.*`` or ``task.*`` event carries the entity's ``version``; a projection
keeps the newest one it has seen. The check and the write are one conditional upsert, atomic on
MongoDB and on the FerretDB this project builds (each write command holds its collection).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError

DUPLICATE_KEY = 11000
"""MongoDB's code of a write refused for a duplicate key, as a bulk write's errors carry it."""


def _newer_than_stored(key: Any, version: int, fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter and update that set ``fields`` and ``version`` on ``key`` while it is older."""
    return {"_id": key, "version": {"$lt": version}}, {"$set": {**fields, "version": version}}


def apply_if_newer(collection: Collection, key: Any, version: int, fields: Mapping[str, Any]) -> bool:
    """Set ``fields`` (and ``version``) on document ``key`` unless it already has ``version`` or newer.

    One ``update_one({_id: key, version: {$lt: version}}, upsert=True)``: when a document with
    that ``_id`` exists at ``version`` or newer, the upsert's insert is a duplicate key and
    nothing changes. A duplicate key can also mean that another snapshot's upsert created the
    document first (MongoDB does not retry an upsert whose filter has more than ``_id``), so the
    update is tried once more, without the upsert. Idempotent: applying the same snapshot twice,
    or an older one after it, changes nothing.

    Returns:
        True when this snapshot was the newest and was stored.
    """
    condition, update = _newer_than_stored(key, version, fields)
    try:
        collection.update_one(condition, update, upsert=True)
    except DuplicateKeyError:
        return collection.update_one(condition, update).matched_count == 1
    return True


def apply_all_if_newer(collection: Collection, snapshots: Iterable[tuple[Any, int, Mapping[str, Any]]]) -> None:
    """:func:`apply_if_newer` for many ``(key, version, fields)`` at once: one unordered bulk write
    of the conditional upserts, then, for those that hit a duplicate key, one of the same updates
    without the upsert. Same guarantees, two round trips for a page instead of one per snapshot.

    Raises:
        pymongo.errors.BulkWriteError: a write failed for another reason than a duplicate key.
    """
    updates = [_newer_than_stored(key, version, fields) for key, version, fields in snapshots]
    if not updates:
        return
    try:
        collection.bulk_write([UpdateOne(condition, update, upsert=True) for condition, update in updates], ordered=False)
    except BulkWriteError as error:
        failed = error.details["writeErrors"]
        if any(failure["code"] != DUPLICATE_KEY for failure in failed):
            raise
        collection.bulk_write([UpdateOne(*updates[failure["index"]]) for failure in failed], ordered=False)
