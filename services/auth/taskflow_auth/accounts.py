"""What the auth service does: accounts, sessions and roles (DESIGN §4 auth), independent of HTTP.

Raises the typed problems of :mod:`.errors`; every change of a user goes through the outbox with
its ``user.*`` event, conditional on the version it was computed from (:meth:`Accounts._change_user`
recomputes it from the fresh user when another change came first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bson import ObjectId
from taskflow_common.events.envelope import Event
from taskflow_common.locks import DocumentLocks
from taskflow_common.problems import Forbidden
from taskflow_common.deactivation import admit_account
from taskflow_common.tokens import Principal

from .errors import (
    AccountDeactivated,
    EmailAlreadyVerified,
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidVerificationLink,
    LastActiveAdmin,
    UserNotFound,
    VerificationThrottled,
    WrongCurrentPassword,
)
from .events import UserEvents
from .keys import SigningKeys
from .passwords import PasswordHasher
from .settings import AuthSettings
from .store import ACCESS_GENERATION, SESSION_GENERATION, AttemptBudgets, RefreshTokenStore, UserStore, VersionConflict, now
from .throttling import SignInThrottle
from .verification import VerificationLinks
from .tokens import access_token, new_refresh_token, refresh_token_hash


MAX_CHANGE_ATTEMPTS = 20
"""Reads and conditional writes of one user before a change gives up with 409 (each failed
attempt means another change of that user succeeded)."""


def _ended_sessions(user: dict[str, Any]) -> dict[str, int]:
    """The fields that end every session of ``user`` in the write that changes it: a new access
    generation (its access tokens are refused everywhere) and a new session generation (its
    refresh tokens are refused, also one a rotation racing the write issues)."""
    return {ACCESS_GENERATION: user.get(ACCESS_GENERATION, 0) + 1, SESSION_GENERATION: user.get(SESSION_GENERATION, 0) + 1}


class NotAnAdmin(Exception):
    """The first admin's email belongs to an account that is not an admin: nobody is promoted
    from the environment (an operator promotes with ``python -m taskflow_auth.cli promote``)."""

    def __init__(self, email: str) -> None:
        super().__init__(
            f"{email} (ADMIN_EMAIL) is an existing account that is not an admin; it is left unchanged. "
            f"If it is yours, promote it: python -m taskflow_auth.cli promote {email}"
        )


@dataclass(frozen=True)
class Session:
    """A user with a fresh token pair; ``expires_in`` is the access token's lifetime in seconds;
    ``device`` the token of the device cookie to set (see :mod:`.throttling`)."""

    user: dict[str, Any]
    access_token: str
    refresh_token: str
    expires_in: int
    device: str | None = None


class Accounts:
    """The auth domain over its stores.

    Args:
        settings: TTLs.
        users, refresh_tokens: the stores (see :mod:`.store`).
        throttle: the budgets of password checks and the devices known to accounts.
        links: the email-verification links.
        resends: the budgets of verification emails asked for (``resend:<user id>``, per hour).
        locks: the service's leases (``admin-changes``: the last active admin stays).
        keys: signs access tokens.
        hasher: hashes and verifies passwords.
        events: builds the ``user.*`` events.
    """

    def __init__(
        self,
        settings: AuthSettings,
        users: UserStore,
        refresh_tokens: RefreshTokenStore,
        throttle: SignInThrottle,
        links: VerificationLinks,
        resends: AttemptBudgets,
        locks: DocumentLocks,
        keys: SigningKeys,
        hasher: PasswordHasher,
        events: UserEvents,
    ) -> None:
        self.settings = settings
        self.users = users
        self.refresh_tokens = refresh_tokens
        self.throttle = throttle
        self.links = links
        self.resends = resends
        self.locks = locks
        self.keys = keys
        self.hasher = hasher
        self.events = events

    # -- sessions ----------------------------------------------------------------------------

    def _session(self, user: dict[str, Any], family_id: str | None = None) -> Session:
        token = new_refresh_token()
        self.refresh_tokens.add(
            refresh_token_hash(token),
            user_id=str(user["_id"]),
            family_id=family_id or str(ObjectId()),
            generation=user.get(SESSION_GENERATION, 0),
        )
        access = access_token(self.keys, user_id=str(user["_id"]), role=user["role"],
                              ttl_seconds=self.settings.access_token_ttl, generation=user.get(ACCESS_GENERATION, 0))
        return Session(user, access, token, self.settings.access_token_ttl)

    def register(self, email: str, password: str, name: str) -> Session:
        """A new ``user`` account, unverified, and its first session; the caller's device becomes
        known to the account under a new device token, and a verification link goes out
        (``user.email_verification_requested``, in the same write as ``user.registered``).

        Raises:
            EmailTaken: an account has this email (its link, stored first, just expires).
        """
        if self.users.by_email(email) is not None:
            raise EmailTaken("An account with this email already exists.")
        moment = now()
        user = {
            "_id": ObjectId(),
            "email": email,
            "name": name,
            "password_hash": self.hasher.hash(password),
            "role": "user",
            "active": True,
            "created_at": moment,
            "updated_at": moment,
            "last_login_at": None,
            "email_verified": False,
            "version": 1,
        }
        link = self.links.issue(user)
        actor_id = str(user["_id"])
        self.users.insert(user, [self.events.registered(user, actor_id), self.events.verification_requested(user, link, actor_id)])
        return replace(self._session(user), device=self.throttle.remember(email))

    def login(self, email: str, password: str, client: str, devices: Sequence[str] = ()) -> Session:
        """A new session for correct credentials; the device becomes (or stays) known to the
        account.

        Args:
            client: the caller's address; devices: the tokens of its device cookies.

        Raises:
            LoginThrottled: the attempt's budget is spent (:mod:`.throttling`), even if the
                password is right this time.
            InvalidCredentials: unknown email or wrong password (indistinguishable, same timing).
            AccountDeactivated: the credentials are right but the account is deactivated.
        """
        attempt = self.throttle.attempt(email, client, devices)
        user = self.users.by_email(email)
        if not self.hasher.verify(password, user["password_hash"] if user else None):
            raise InvalidCredentials()
        assert user is not None
        self.throttle.succeeded(attempt)
        if not user["active"]:
            raise AccountDeactivated("This account is deactivated.")
        user["last_login_at"] = now()
        self.users.record_login(user, user["last_login_at"], [self.events.logged_in(user)])
        return replace(self._session(user), device=self.throttle.remember(email, attempt))

    def refresh(self, token: str) -> Session:
        """Rotate a refresh token: the presented one dies, a new pair is issued in its family.

        A token that was already rotated (or revoked) is evidence it leaked: the whole family,
        every token descending from that login, is revoked. Spending is one conditional update,
        so of two requests presenting the same token one at most rotates it.

        Neither revocation relies on a multi-document update being atomic (MongoDB's are not):
        a token carries the user's session generation, which logout-all, a password change and
        deactivation raise in the same write as the access generation, before revoking the
        tokens; so a rotation racing them either read the user before (its access token is of
        the old access generation, refused everywhere, and its refresh token of the old session
        generation) or after (it refuses). And a family is marked revoked before its tokens are,
        and the rotation looks for that mark after storing the new token, revoking it itself if
        the mark is there.

        Raises:
            InvalidRefreshToken: unknown, expired, reused or revoked, or the account is deactivated.
        """
        token_hash = refresh_token_hash(token)
        record = self.refresh_tokens.spend(token_hash, now())
        if record is None:
            spent = self.refresh_tokens.find(token_hash)
            if spent is not None and (spent["used_at"] is not None or spent["revoked_at"] is not None):
                self.refresh_tokens.revoke_family(spent["family_id"])  # reused or revoked
            raise InvalidRefreshToken()
        user = self.users.by_id(record["user_id"])
        stale = record.get("generation", 0) != (user or {}).get(SESSION_GENERATION, 0)
        if user is None or not user["active"] or stale:
            self.refresh_tokens.revoke_family(record["family_id"])
            raise InvalidRefreshToken()
        session = self._session(user, family_id=record["family_id"])
        if self.refresh_tokens.family_revoked(record["family_id"]):
            self.refresh_tokens.revoke(refresh_token_hash(session.refresh_token))
            raise InvalidRefreshToken()
        return session

    def logout(self, token: str) -> None:
        """Revoke one refresh token (unknown tokens are ignored: logging out twice is fine)."""
        self.refresh_tokens.revoke(refresh_token_hash(token))

    def logout_all(self, user_id: str) -> None:
        """End every session of the user: its access tokens (a new access generation, with
        ``user.sessions_revoked``) and its refresh tokens; and forget its devices."""

        def revoke(user: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
            fields = {**_ended_sessions(user), "updated_at": now()}
            return fields, [self.events.sessions_revoked({**user, **fields, "version": user["version"] + 1}, user_id)]

        user = self._change_user(user_id, revoke)
        self.refresh_tokens.revoke_user(user_id)
        self.throttle.forget(user["email"])

    # -- the account -------------------------------------------------------------------------

    def user(self, user_id: str) -> dict[str, Any]:
        """The user, or :class:`UserNotFound`."""
        user = self.users.by_id(user_id)
        if user is None:
            raise UserNotFound()
        return user

    def _change_user(
        self, user_id: str, change: Callable[[dict[str, Any]], tuple[dict[str, Any], Sequence[Event]] | None]
    ) -> dict[str, Any]:
        """Apply ``change`` to the user's latest state: ``change(user)`` returns the fields to set
        (besides ``version``) and their events, or None for nothing to do. Written conditionally
        on the version read; when another change came first, recomputed from the fresh user.

        Returns:
            the user as stored after the change.

        Raises:
            UserNotFound: no such user.
            VersionConflict: the user kept changing under ``MAX_CHANGE_ATTEMPTS`` attempts.
            Whatever ``change`` raises.
        """
        for _ in range(MAX_CHANGE_ATTEMPTS):
            user = self.user(user_id)
            decided = change(user)
            if decided is None:
                return user
            fields, events = decided
            try:
                self.users.update(user, fields, events)
            except VersionConflict:
                continue
            return {**user, **fields, "version": user["version"] + 1}
        raise VersionConflict()

    def rename(self, user_id: str, name: str) -> dict[str, Any]:
        """Change the user's display name (``user.updated`` with ``changed: ["name"]``)."""

        def rename(user: dict[str, Any]) -> tuple[dict[str, Any], list[Event]] | None:
            if user["name"] == name:
                return None
            fields = {"name": name, "updated_at": now()}
            return fields, [self.events.updated({**user, **fields, "version": user["version"] + 1}, ["name"], user_id)]

        return self._change_user(user_id, rename)

    def change_password(self, user_id: str, current: str, new: str, client: str, devices: Sequence[str] = ()) -> None:
        """Set a new password after checking the current one; ends every session and forgets
        every device of the account but the caller's.

        The check spends the budgets a login from the same client and device would.

        Raises:
            LoginThrottled: the attempt's budget is spent (:mod:`.throttling`).
            WrongCurrentPassword: ``current`` is not the password.
        """
        user = self.user(user_id)
        attempt = self.throttle.attempt(user["email"], client, devices)
        if not self.hasher.verify(current, user["password_hash"]):
            raise WrongCurrentPassword("The current password is incorrect.")
        self.throttle.succeeded(attempt)
        password_hash = self.hasher.hash(new)

        def set_password(user: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
            fields = {"password_hash": password_hash, **_ended_sessions(user), "updated_at": now()}
            return fields, [self.events.password_changed({**user, **fields, "version": user["version"] + 1}, user_id)]

        self._change_user(user_id, set_password)
        self.refresh_tokens.revoke_user(user_id)
        self.throttle.forget(user["email"])
        if attempt.device is not None:
            self.throttle.remember(user["email"], attempt)

    # -- email verification ------------------------------------------------------------------

    def verify_email(self, token: str) -> None:
        """Spend the link (one conditional delete: one of parallel requests gets it) and mark its
        user's email verified (``user.email_verified``); a link of an address already verified is
        spent without a change.

        Raises:
            InvalidVerificationLink: malformed, unknown, already used, replaced or expired.
        """
        link = self.links.spend(token)
        if link is None:
            raise InvalidVerificationLink()

        def verify(user: dict[str, Any]) -> tuple[dict[str, Any], list[Event]] | None:
            if user.get("email_verified") or user["email"] != link["email"]:
                return None
            fields = {"email_verified": True, "updated_at": now()}
            return fields, [self.events.email_verified({**user, **fields, "version": user["version"] + 1}, str(user["_id"]))]

        try:
            self._change_user(link["_id"], verify)
        except UserNotFound:
            raise InvalidVerificationLink() from None

    def resend_verification(self, user_id: str) -> None:
        """A new verification link for the user's email, replacing the open one
        (``user.email_verification_requested``).

        Raises:
            EmailAlreadyVerified: nothing to verify.
            VerificationThrottled: ``VERIFICATION_RESENDS_PER_HOUR`` links were asked for this hour.
        """
        if self.user(user_id).get("email_verified"):
            raise EmailAlreadyVerified()
        wait = self.resends.reserve(f"resend:{user_id}", self.settings.verification_resends_per_hour)
        if wait is not None:
            raise VerificationThrottled(wait)
        link = self.links.issue(self.user(user_id))

        def request(user: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
            if user.get("email_verified"):
                raise EmailAlreadyVerified()
            fields = {"verification_sent_at": now()}
            return fields, [self.events.verification_requested({**user, **fields, "version": user["version"] + 1}, link, user_id)]

        self._change_user(user_id, request)

    # -- administration (the internal API) ---------------------------------------------------

    def change(self, actor_id: str | None, user_id: str, *, role: str | None, active: bool | None) -> dict[str, Any]:
        """Change a user's role and/or active flag, as admin ``actor_id`` (None: the system).

        Emits ``user.role_changed`` and/or ``user.deactivated`` / ``user.activated``; deactivating
        revokes the user's refresh tokens. Changes that could remove an admin are serialized, so
        two admins demoting each other at once cannot both succeed.

        Raises:
            Forbidden: ``actor_id`` is not an active admin as stored now.
            UserNotFound: no such user.
            LastActiveAdmin: the change would leave no active admin.
        """

        def change(user: dict[str, Any]) -> tuple[dict[str, Any], list[Event]] | None:
            new_role = role if role is not None else user["role"]
            new_active = active if active is not None else user["active"]
            if (new_role, new_active) == (user["role"], user["active"]):
                return None
            loses_admin = user["role"] == "admin" and user["active"] and not (new_role == "admin" and new_active)
            if loses_admin and self.users.count_active_admins() <= 1:
                raise LastActiveAdmin()
            # A role change ends access tokens only (a refresh brings the new role); deactivation all.
            ended = _ended_sessions(user) if not new_active else {ACCESS_GENERATION: user.get(ACCESS_GENERATION, 0) + 1}
            fields = {"role": new_role, "active": new_active, **ended, "updated_at": now()}
            changed = {**user, **fields, "version": user["version"] + 1}
            events = []
            if new_role != user["role"]:
                events.append(self.events.role_changed(changed, user["role"], actor_id))
            if new_active != user["active"]:
                events.append((self.events.activated if new_active else self.events.deactivated)(changed, actor_id))
            return fields, events

        # The count of active admins spans documents: changes that could lower it are serialized.
        with self.locks.hold("admin-changes"):
            if actor_id is not None:
                self._require_active_admin(actor_id)
            changed = self._change_user(user_id, change)
        if not changed["active"]:
            self.refresh_tokens.revoke_user(user_id)
            self.throttle.forget(changed["email"])
        return changed

    def _require_active_admin(self, actor_id: str) -> None:
        """The actor of an administrative change is an active admin now, whatever its token says.

        Raises:
            Forbidden: it is not (any more).
        """
        actor = self.users.by_id(actor_id)
        if actor is None or not actor["active"] or actor["role"] != "admin":
            raise Forbidden("This operation requires the admin role.")

    def create_first_admin(self, email: str, password: str) -> dict[str, Any]:
        """Create ``email`` as an active admin with ``password`` unless an account has that email
        (start-up's ``ADMIN_EMAIL``, the ``create-admin`` command). An existing account is never
        changed, whoever registered it: promoting one is :meth:`promote`, an operator's choice.

        Returns the admin's account.

        Raises:
            NotAnAdmin: the email belongs to an account that is not an admin (left as it is).
        """
        existing = self.users.by_email(email)
        if existing is None:
            moment = now()
            user = {
                "_id": ObjectId(),
                "email": email,
                "name": email.split("@")[0],
                "password_hash": self.hasher.hash(password),
                "role": "admin",
                "active": True,
                "created_at": moment,
                "updated_at": moment,
                "last_login_at": None,
                "email_verified": True,  # the operator vouches for the address
                "version": 1,
            }
            try:
                self.users.insert(user, [self.events.registered(user, actor_id=None)])
                return user
            except EmailTaken:
                existing = self.users.by_email(email)  # another process created it meanwhile
                assert existing is not None
        if existing["role"] != "admin":
            raise NotAnAdmin(email)
        return existing

    def promote(self, email: str) -> dict[str, Any]:
        """Make the existing account of ``email`` an admin (the operator command ``promote``); its
        password and active flag stay as they are.

        Raises:
            UserNotFound: no account has that email.
        """
        existing = self.users.by_email(email)
        if existing is None:
            raise UserNotFound()
        return self.change(None, str(existing["_id"]), role="admin", active=None)

    def page(self, skip: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """All users, oldest first, for read-model backfill."""
        return self.users.page(skip, limit)

    def admit(self, principal: Principal) -> None:
        """The access policy of auth's own routes, from the account as stored now.

        Raises:
            Forbidden: the account does not exist or is deactivated.
            TokenRevoked: the token is of an earlier access generation than the account's.
        """
        user = self.users.by_id(principal.user_id) or {"active": False}
        admit_account(principal, active=user["active"], access_generation=user.get(ACCESS_GENERATION, 0))
