"""Internal routes of the auth service under ``/internal/users``, never routed by the gateway.

The admin service calls them with the admin's bearer token forwarded, so every route requires
the ``admin`` role: to list users page by page (read-model backfill) and to change a user's role
or activation (DESIGN §4 admin: PATCH /admin/users/{id} is applied here).
"""

from __future__ import annotations

from taskflow_common.api import Api
from taskflow_common.pagination import Page
from taskflow_common.tokens import Principal

from .api import accounts
from .schemas import UserChange, UserListQuery, UserRecord

internal = Api(
    "auth-internal",
    "/internal/users",
    title="TaskFlow auth (internal)",
    description="User administration for other TaskFlow services; not exposed by the gateway.",
)


@internal.get("", summary="Every user, oldest first", query=UserListQuery, response=Page[UserRecord], access="admin")
def list_users(query: UserListQuery) -> Page[UserRecord]:
    """Admins, through the admin service."""
    users, total = accounts().page(query.skip, query.limit)
    return Page[UserRecord](items=[UserRecord.from_document(user) for user in users], total=total, page=query.page, limit=query.limit)


@internal.get("/<user_id>", summary="One user", response=UserRecord, access="admin", errors=(404,))
def get_user(user_id: str) -> UserRecord:
    """Admins, through the admin service."""
    return UserRecord.from_document(accounts().user(user_id))


@internal.patch("/<user_id>", summary="Change a user's role or activation", body=UserChange, response=UserRecord,
                access="admin", errors=(404, 409))
def change_user(user_id: str, body: UserChange, principal: Principal) -> UserRecord:
    """Admins, through the admin service. 409 when it would leave no active admin."""
    return UserRecord.from_document(accounts().change(principal.user_id, user_id, role=body.role, active=body.active))
