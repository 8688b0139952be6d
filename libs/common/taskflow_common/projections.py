"""Read models kept from events that arrive in any order (DESIGN §5: no order promised).

Every snapshot in a ``user.*`` or ``task.*`` event carries the entity's ``version``; a projection
keeps the newest one it has seen. The check and the write happen under the document's lock,
since FerretDB's updates are not atomic (see :mod:`taskflow_common.locks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.collection import Collection

from .locks import DocumentLocks


def apply_if_newer(
    collection: Collection, locks: DocumentLocks, key: Any, version: int, fields: Mapping[str, Any]
) -> bool:
    """Set ``fields`` (and ``version``) on document ``key`` unless it already has ``version`` or newer.

    Idempotent: applying the same snapshot twice, or an older one after it, changes nothing.

    Returns:
        True when this snapshot was the newest and was stored.
    """
    with locks.hold(f"{collection.name}:{key}"):
        current = collection.find_one({"_id": key}, {"version": 1})
        if current is not None and current.get("version", 0) >= version:
            return False
        collection.update_one({"_id": key}, {"$set": {**fields, "version": version}}, upsert=True)
        return True
