"""Read models kept from events that arrive in any order (DESIGN §5: no order promised).

Every snapshot in a ``user.*`` or ``task.*`` event carries the entity's ``version``; a projection
keeps the newest one it has seen. The check and the write are one conditional upsert, atomic on
MongoDB and on the FerretDB this project builds (each write command holds its collection).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError


def apply_if_newer(collection: Collection, key: Any, version: int, fields: Mapping[str, Any]) -> bool:
    """Set ``fields`` (and ``version``) on document ``key`` unless it already has ``version`` or newer.

    One ``update_one({_id: key, version: {$lt: version}}, upsert=True)``: when a document with
    that ``_id`` exists at ``version`` or newer, the upsert's insert is a duplicate key and
    nothing changes. Idempotent: applying the same snapshot twice, or an older one after it,
    changes nothing.

    Returns:
        True when this snapshot was the newest and was stored.
    """
    try:
        collection.update_one({"_id": key, "version": {"$lt": version}}, {"$set": {**fields, "version": version}}, upsert=True)
    except DuplicateKeyError:
        return False
    return True
