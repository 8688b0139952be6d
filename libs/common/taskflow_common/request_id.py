"""``X-Request-ID`` on every response: the caller's (or the gateway's) id, else a new UUID.

A client-sent id is kept only when it is short and plain (it ends up in logs); anything else
is replaced, so a header cannot inject text into log lines.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def current() -> str | None:
    """The id of the request being handled, or None outside a request."""
    return g.get("request_id")


def _assign() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if _ACCEPTABLE.fullmatch(given) else str(uuid.uuid4())


def _echo(response: Response) -> Response:
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
    return response


def install(app: Flask) -> None:
    """Assign an id before every request of ``app`` and return it on every response."""
    app.before_request(_assign)
    app.after_request(_echo)
