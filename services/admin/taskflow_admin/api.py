"""Routes of the admin service under ``/api/v1/admin`` (DESIGN §4 admin); every one requires the
``admin`` role (401 without a valid token, 403 for anyone else)."""

from __future__ import annotations

from flask import current_app, request
from taskflow_common.api import Api, Link
from taskflow_common.pagination import Page

from .administration import Administration
from .schemas import AdminUser, AuditEntry, AuditQuery, SystemStats, UserChange, UserQuery

api = Api(
    "admin",
    "/api/v1/admin",
    title="TaskFlow admin",
    description="User management, system statistics and the audit log, built from events (DESIGN §4 admin).",
)


def administration() -> Administration:
    admin: Administration = current_app.extensions["taskflow_admin"]
    admin.backfill(request.headers["Authorization"])
    return admin


@api.get("/users", summary="Users, newest first", query=UserQuery, response=Page[AdminUser], access="admin",
         links={"GetFirstUser": Link("get_user", {"user_id": "$response.body#/items/0/id"}, description="The first user listed.")})
def list_users(query: UserQuery) -> Page[AdminUser]:
    """Admins. ``q`` searches email and name; ``role`` and ``active`` filter."""
    users, total = administration().users(q=query.q, role=query.role, active=query.active, skip=query.skip, limit=query.limit)
    return Page[AdminUser](items=[AdminUser.model_validate(user) for user in users], total=total, page=query.page, limit=query.limit)


@api.get("/users/<user_id>", summary="One user", response=AdminUser, access="admin", errors=(404,))
def get_user(user_id: str) -> AdminUser:
    """Admins."""
    return AdminUser.model_validate(administration().user(user_id))


@api.patch("/users/<user_id>", summary="Change a user's role or activation", body=UserChange, response=AdminUser,
           access="admin", errors=(404, 409, 502))
def change_user(user_id: str, body: UserChange) -> AdminUser:
    """Admins. Applied by auth; 409 when it would leave no active admin."""
    change = body.model_dump(exclude_none=True)
    return AdminUser.model_validate(administration().change_user(user_id, change, request.headers["Authorization"]))


@api.get("/stats", summary="System statistics", response=SystemStats, access="admin")
def stats() -> SystemStats:
    """Admins. Users, tasks and event counts from admin's read models."""
    return SystemStats.model_validate(administration().stats())


@api.get("/audit", summary="The audit log, newest first", query=AuditQuery, response=Page[AuditEntry], access="admin")
def audit(query: AuditQuery) -> Page[AuditEntry]:
    """Admins. One entry per domain event; ``trace_id`` opens the causing request in Jaeger."""
    entries, total = administration().audit(
        type=query.type, actor_id=query.actor_id, subject_id=query.subject_id, since=query.since,
        skip=query.skip, limit=query.limit,
    )
    return Page[AuditEntry](items=[AuditEntry.model_validate(entry) for entry in entries], total=total, page=query.page, limit=query.limit)
