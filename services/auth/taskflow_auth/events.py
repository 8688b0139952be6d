"""The events the auth service emits (DESIGN §5): ``user.*``, each carrying the user's snapshot
(never a password hash or token) with its ``access_generation``, and ``actor_id`` where someone
caused it. Auth consumes none."""

from __future__ import annotations

from typing import Any

from taskflow_common.events.envelope import Event
from taskflow_common.events.plumbing import ServiceEvents

from .schemas import UserRecord
from .store import ACCESS_GENERATION
from .verification import VerificationLink


def snapshot(user: dict[str, Any]) -> dict[str, Any]:
    """The public fields of a stored user plus ``updated_at``, ``last_login_at`` and ``version``."""
    return UserRecord.from_document(user).model_dump(mode="json")


class UserEvents:
    """Builds each ``user.*`` event from the user as it is *after* the change."""

    def __init__(self, events: ServiceEvents) -> None:
        self._events = events

    def _event(self, type: str, user: dict[str, Any], actor_id: str | None, **extra: Any) -> Event:
        data = {**snapshot(user), "access_generation": user.get(ACCESS_GENERATION, 0), **extra}
        return self._events.event(type, str(user["_id"]), data, actor_id)

    def registered(self, user: dict[str, Any], actor_id: str | None) -> Event:
        return self._event("user.registered", user, actor_id)

    def updated(self, user: dict[str, Any], changed: list[str], actor_id: str) -> Event:
        return self._event("user.updated", user, actor_id, changed=changed)

    def role_changed(self, user: dict[str, Any], previous_role: str, actor_id: str | None) -> Event:
        return self._event("user.role_changed", user, actor_id, previous_role=previous_role)

    def deactivated(self, user: dict[str, Any], actor_id: str) -> Event:
        return self._event("user.deactivated", user, actor_id)

    def activated(self, user: dict[str, Any], actor_id: str) -> Event:
        return self._event("user.activated", user, actor_id)

    def password_changed(self, user: dict[str, Any], actor_id: str) -> Event:
        return self._event("user.password_changed", user, actor_id)

    def sessions_revoked(self, user: dict[str, Any], actor_id: str) -> Event:
        return self._event("user.sessions_revoked", user, actor_id)

    def verification_requested(self, user: dict[str, Any], link: VerificationLink, actor_id: str) -> Event:
        """For notify to mail ``link``: its page, nonce and expiry; the token follows from them
        and the key auth and notify share, so the event carries no secret."""
        return self._event(
            "user.email_verification_requested",
            user,
            actor_id,
            verification_page=link.page,
            verification_nonce=link.nonce,
            verification_expires_at=link.expires_at,
        )

    def email_verified(self, user: dict[str, Any], actor_id: str) -> Event:
        return self._event("user.email_verified", user, actor_id)

    def logged_in(self, user: dict[str, Any]) -> Event:
        return self._event("user.logged_in", user, str(user["_id"]))
