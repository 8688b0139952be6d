"""Every MongoDB query of the auth service, with the indexes they need declared in one place.

Collections: ``users`` (with their pending events in ``_outbox``), ``refresh_tokens`` (keyed by the
token's hash), ``revoked_families`` (login families revoked for reuse), ``login_failures``
(fixed-window counters keyed by account, client, device or resend), ``devices`` (devices known to
an account), ``verification_links`` (each user's open verification link, by the token's hash) and
``locks``. All but users expire (:data:`EXPIRIES`): a token once expired, a family
mark when its tokens would have, a counter once its window closed, a device once unseen for its
lifetime, a verification link once expired, a lease once it ended.

Every change of one document is a single conditional update, atomic on MongoDB and on the
FerretDB this project builds: a user's change is conditional on the ``version`` it was computed
from (:class:`VersionConflict` otherwise, and the caller recomputes), spending a refresh token on
it being unspent, a sign-in attempt reserved by an ``$inc`` conditional on its window's budget.
The one invariant spanning documents, "an active admin remains", is kept under the
``admin-changes`` lease (:mod:`taskflow_common.locks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from taskflow_common.events.envelope import Event
from taskflow_common.events.outbox import WITHOUT_EVENTS, Outbox
from taskflow_common.expiry import Expiry
from taskflow_common.locks import COLLECTION as LOCKS
from taskflow_common.mongo import Indexes
from taskflow_common.problems import Conflict

from .errors import EmailTaken

USERS = "users"
REFRESH_TOKENS = "refresh_tokens"
LOGIN_FAILURES = "login_failures"
DEVICES = "devices"
VERIFICATION_LINKS = "verification_links"
REVOKED_FAMILIES = "revoked_families"
SESSION_GENERATION = "session_generation"
"""On a user: raised by logout-all, a password change and deactivation; a refresh token issued
under an earlier value is refused."""
ACCESS_GENERATION = "access_generation"
"""On a user: raised by a role change, deactivation, password change or logout-all, each in the
change's own write and event; access tokens carry it (``gen``) and every service refuses those of
an earlier one (``taskflow_common.deactivation``)."""
RESERVE_TRIES = 10
"""Rounds of :meth:`AttemptBudgets.reserve` against windows opening and closing under it."""

INDEXES = (
    Indexes(USERS, (IndexModel([("email", ASCENDING)], unique=True), IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)]), IndexModel([("role", ASCENDING), ("active", ASCENDING)]))),
    Indexes(REFRESH_TOKENS, (IndexModel([("user_id", ASCENDING)]), IndexModel([("family_id", ASCENDING)]))),
    Indexes(VERIFICATION_LINKS, (IndexModel([("token_hash", ASCENDING)], unique=True),)),
    Indexes(DEVICES, (IndexModel([("email", ASCENDING)]),)),
)
EXPIRIES = (
    Expiry(REFRESH_TOKENS, "expires_at"),  # an expired token is refused anyway, reuse included
    Expiry(LOGIN_FAILURES, "window_ends"),  # a closed window counts nothing
    Expiry(DEVICES, "expires_at"),  # a device unseen for its lifetime is unknown again
    Expiry(VERIFICATION_LINKS, "expires_at"),  # an expired link is refused anyway
    Expiry(LOCKS, "expires_at"),  # a lease past its end may be broken anyway
    Expiry(REVOKED_FAMILIES, "expires_at"),  # no token of the family outlives it
)


def now() -> datetime:
    """The current time in UTC, truncated to milliseconds as MongoDB stores it."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def object_id(value: str) -> ObjectId | None:
    """The ObjectId a public id names, or None when it is not one (then nothing matches)."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


class VersionConflict(Conflict):
    """The user changed between read and write (409 only after repeated retries)."""

    def __init__(self) -> None:
        super().__init__("The account changed concurrently; retry.")


class UserStore:
    """Users and the events of their changes (through the outbox)."""

    def __init__(self, db: Callable[[], Database], outbox: Outbox) -> None:
        self._db = db
        self.outbox = outbox

    @property
    def _users(self):  # noqa: ANN202
        return self._db()[USERS]

    def insert(self, user: dict[str, Any], events: Sequence[Event]) -> None:
        """Insert a new user with its events. Raises :class:`EmailTaken` when the email is in use."""
        try:
            with self.outbox.write(USERS, user["_id"], events) as pending:
                self._users.insert_one({**user, **pending.insert_fields})
        except DuplicateKeyError:
            raise EmailTaken("An account with this email already exists.") from None

    def by_email(self, email: str) -> dict[str, Any] | None:
        return self._users.find_one({"email": email}, WITHOUT_EVENTS)

    def by_id(self, user_id: str) -> dict[str, Any] | None:
        key = object_id(user_id)
        return None if key is None else self._users.find_one({"_id": key}, WITHOUT_EVENTS)

    def update(self, user: dict[str, Any], changes: dict[str, Any], events: Sequence[Event]) -> None:
        """Apply ``changes`` to ``user`` as read, bumping its version; conditional on that version.

        Raises:
            VersionConflict: the user changed since it was read (read again and recompute).
        """
        with self.outbox.write(USERS, user["_id"], events) as pending:
            result = self._users.update_one(
                {"_id": user["_id"], "version": user["version"]},
                pending.update({"$set": {**changes, "version": user["version"] + 1}}),
            )
            if result.matched_count == 0:
                raise VersionConflict()

    def record_login(self, user: dict[str, Any], at: datetime, events: Sequence[Event]) -> None:
        """Remember the login time (not a change of the user: the version stays)."""
        with self.outbox.write(USERS, user["_id"], events) as pending:
            self._users.update_one({"_id": user["_id"]}, pending.update({"$set": {"last_login_at": at}}))

    def page(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Users oldest first (stable), and how many there are."""
        found = self._users.find({}, WITHOUT_EVENTS).sort([("created_at", ASCENDING), ("_id", ASCENDING)]).skip(skip).limit(limit)
        return list(found), self._users.count_documents({})

    def count_active_admins(self) -> int:
        return self._users.count_documents({"role": "admin", "active": True})


class RefreshTokenStore:
    """Refresh tokens by hash: single use, grouped in families (one login and its rotations).

    Revocations (one token, a family, every token of a user) mark every matching token not yet
    revoked, spent ones included. A multi-document update is not atomic on MongoDB, so neither
    family nor user revocation relies on reaching a token stored while it runs: see
    :meth:`Accounts.refresh` for the family mark and the session generation that cover it.
    """

    def __init__(self, db: Callable[[], Database], *, ttl_seconds: int) -> None:
        self._db = db
        self.ttl = timedelta(seconds=ttl_seconds)

    @property
    def _tokens(self):  # noqa: ANN202
        return self._db()[REFRESH_TOKENS]

    def add(self, token_hash: str, *, user_id: str, family_id: str, generation: int) -> None:
        """Store a new token of ``family_id``, issued under the user's session ``generation``."""
        issued = now()
        self._tokens.insert_one(
            {
                "_id": token_hash,
                "user_id": user_id,
                "family_id": family_id,
                "generation": generation,
                "created_at": issued,
                "expires_at": issued + self.ttl,
                "used_at": None,
                "revoked_at": None,
            }
        )

    def spend(self, token_hash: str, at: datetime) -> dict[str, Any] | None:
        """Mark a token live at ``at`` (unused, unrevoked, unexpired) used, atomically; the token
        as it was, or None when it was not live (spent first by another request, revoked, expired)."""
        return self._tokens.find_one_and_update(
            {"_id": token_hash, "used_at": None, "revoked_at": None, "expires_at": {"$gt": at}},
            {"$set": {"used_at": at}},
            return_document=ReturnDocument.BEFORE,
        )

    def find(self, token_hash: str) -> dict[str, Any] | None:
        return self._tokens.find_one({"_id": token_hash})

    def revoke(self, token_hash: str) -> None:
        self._tokens.update_one({"_id": token_hash, "revoked_at": None}, {"$set": {"revoked_at": now()}})

    def revoke_family(self, family_id: str) -> None:
        """Mark the family revoked, then revoke each of its tokens (see :meth:`family_revoked`)."""
        moment = now()
        self._db()[REVOKED_FAMILIES].update_one(
            {"_id": family_id}, {"$setOnInsert": {"revoked_at": moment, "expires_at": moment + self.ttl}}, upsert=True
        )
        self._tokens.update_many({"family_id": family_id, "revoked_at": None}, {"$set": {"revoked_at": moment}})

    def family_revoked(self, family_id: str) -> bool:
        """Whether :meth:`revoke_family` was called for the family (its tokens may not all be marked yet)."""
        return self._db()[REVOKED_FAMILIES].find_one({"_id": family_id}, {"_id": 1}) is not None

    def revoke_user(self, user_id: str) -> None:
        self._tokens.update_many({"user_id": user_id, "revoked_at": None}, {"$set": {"revoked_at": now()}})


class AttemptBudgets:
    """Attempts counted per key in fixed windows, as budgets reserved before the attempt: failed
    password checks (DESIGN §4 auth, "Sign-in throttling") and verification emails asked for.

    Sign-in keys are ``account:<email>`` (unknown devices of an account), ``client:<address>`` and
    ``device:<device>`` (one known device of an account); resends are ``resend:<user id>``. A
    window starts at a key's first attempt and lasts ``window_seconds``. An attempt reserves one
    unit of each budget it spends (:meth:`reserve`) before the check; a failed attempt keeps it,
    a successful one gives it back (:meth:`release`). Reserving is one conditional update (``count < limit``), so N parallel
    attempts check at most ``limit`` passwords. Counters live in MongoDB so budgets hold across
    workers and replicas.
    """

    def __init__(self, db: Callable[[], Database], *, window_seconds: int) -> None:
        self._db = db
        self.window = timedelta(seconds=window_seconds)

    @property
    def _failures(self):  # noqa: ANN202
        return self._db()[LOGIN_FAILURES]

    def reserve(self, key: str, limit: int) -> int | None:
        """Reserve one attempt of ``key``'s budget of ``limit`` per window.

        Returns:
            None when reserved; otherwise the seconds until the window ends (at least 1).
        """
        for _ in range(RESERVE_TRIES):
            moment = now()
            counted = self._failures.update_one(
                {"_id": key, "window_ends": {"$gt": moment}, "count": {"$lt": limit}}, {"$inc": {"count": 1}}
            )
            if counted.matched_count == 1:
                return None
            try:
                self._failures.update_one(
                    {"_id": key, "window_ends": {"$lte": moment}},
                    {"$set": {"count": 1, "window_ends": moment + self.window}},
                    upsert=True,
                )
                return None
            except DuplicateKeyError:
                pass  # the window is open: spent, or opened by another attempt meanwhile
            found = self._failures.find_one({"_id": key})
            if found is not None and found["window_ends"] > moment and found["count"] >= limit:
                return max(1, math.ceil((found["window_ends"] - moment).total_seconds()))
        return 1  # the window kept changing under us: busy, try again shortly

    def release(self, key: str) -> None:
        """Give back an attempt :meth:`reserve` counted (it succeeded)."""
        self._failures.update_one({"_id": key, "count": {"$gt": 0}}, {"$inc": {"count": -1}})

    def reset(self, key: str) -> None:
        """Forget every attempt of ``key``'s window."""
        self._failures.delete_one({"_id": key})


class Devices:
    """The devices that signed in to an account before (OWASP's "device cookies"): one document
    ``{_id: "<device hash>:<email>", email, expires_at}`` per device and account, found by ``_id``.

    A device is named by the random token of its cookie; only the token's SHA-256 is stored.
    """

    def __init__(self, db: Callable[[], Database], *, ttl_seconds: int) -> None:
        self._db = db
        self.ttl = timedelta(seconds=ttl_seconds)

    @property
    def _devices(self):  # noqa: ANN202
        return self._db()[DEVICES]

    def known(self, device_hash: str, email: str) -> bool:
        """Whether the device signed in to the account of ``email`` within the last ``ttl``."""
        return self._devices.find_one({"_id": f"{device_hash}:{email}", "expires_at": {"$gt": now()}}, {"_id": 1}) is not None

    def remember(self, device_hash: str, email: str) -> None:
        """Record a sign-in of the device to the account; it stays known for ``ttl`` from now."""
        self._devices.update_one(
            {"_id": f"{device_hash}:{email}"}, {"$set": {"email": email, "expires_at": now() + self.ttl}}, upsert=True
        )

    def forget(self, email: str) -> None:
        """Every device of the account is unknown again."""
        self._devices.delete_many({"email": email})



class VerificationLinkStore:
    """The one open email-verification link of each user: ``{_id: <user id>, token_hash, email,
    expires_at}``, found by ``token_hash`` (unique). Opening a new link replaces the user's
    document in one write, so of any number of links issued to a user only the last one opens.
    """

    def __init__(self, db: Callable[[], Database]) -> None:
        self._db = db

    @property
    def _links(self):  # noqa: ANN202
        return self._db()[VERIFICATION_LINKS]

    def open(self, user_id: str, token_hash: str, email: str, expires_at: datetime) -> None:
        """Make ``token_hash`` the user's open link (any earlier one stops working)."""
        self._links.replace_one(
            {"_id": user_id}, {"token_hash": token_hash, "email": email, "expires_at": expires_at}, upsert=True
        )

    def spend(self, token_hash: str) -> dict[str, Any] | None:
        """Take the open, unexpired link of ``token_hash`` (``_id`` is its user), or None. One
        conditional delete: of parallel spends of one link, one gets it."""
        return self._links.find_one_and_delete({"token_hash": token_hash, "expires_at": {"$gt": now()}})
