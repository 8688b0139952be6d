"""Routes of the notify service under ``/api/v1/notifications`` (DESIGN §4 notify), reached through
the gateway: parse → authorize → call :class:`~.notifications.Notifications` → respond.

Every route is for the signed-in user and sees only their own notifications: another user's id
is the same 404 as an unknown or malformed one.
"""

from __future__ import annotations

from flask import Response, current_app, request
from taskflow_common.api import Api, Link
from taskflow_common.pagination import Page
from taskflow_common.tokens import Principal, authenticate

from .live import LiveFeed
from .notifications import Notifications
from .schemas import Notification, NotificationQuery

api = Api(
    "notify",
    "/api/v1/notifications",
    title="TaskFlow notify",
    description="The in-app inbox, email and due-date reminders, driven by events (DESIGN §4 notify).",
)


def notifications() -> Notifications:
    return current_app.extensions["taskflow_notify.notifications"]


@api.get("", summary="The caller's notifications, newest first", query=NotificationQuery, response=Page[Notification],
         links={"ReadFirst": Link("read", {"notification_id": "$response.body#/items/0/id"},
                                  description="Mark the newest notification listed read.")})
def list_notifications(principal: Principal, query: NotificationQuery) -> Page[Notification]:
    """The signed-in user; ``unread=true`` lists only unread ones."""
    items, total = notifications().page(principal.user_id, unread_only=query.unread, skip=query.skip, limit=query.limit)
    return Page[Notification](
        items=[Notification.from_document(item) for item in items], total=total, page=query.page, limit=query.limit
    )


@api.post("/read-all", summary="Mark every notification of the caller read", status=204)
def read_all(principal: Principal) -> None:
    """The signed-in user."""
    notifications().mark_all_read(principal.user_id)


@api.post("/<notification_id>/read", summary="Mark one notification read", status=204, errors=(404,))
def read(principal: Principal, notification_id: str) -> None:
    """The signed-in user, for one of their own notifications (marking it again changes nothing)."""
    notifications().mark_read(principal.user_id, notification_id)


def stream() -> Response:
    """``GET /api/v1/notifications/stream``: the caller's live feed as Server-Sent Events (:mod:`.live`).

    Declared on the blueprint, not in the OpenAPI document: its answer is an endless
    ``text/event-stream``, which the JSON operations' contract tests cannot read to its end. Bearer
    authentication and its problems (401, 403) are those of every route; a user with
    ``STREAMS_PER_USER`` streams open already gets 429 with ``Retry-After``.
    """
    principal = authenticate()
    live: LiveFeed = current_app.extensions["taskflow_notify.live"]
    return Response(
        live.open(principal, request.headers.get("Last-Event-ID")),
        mimetype="text/event-stream",
        # No proxy may hold events back (nginx and Kong honour X-Accel-Buffering) or keep a copy.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


api.blueprint.add_url_rule("/stream", "stream", stream, methods=["GET"])
