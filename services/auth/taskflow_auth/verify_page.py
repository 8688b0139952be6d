"""The page a verification email links to, ``GET /verify-email`` (the gateway routes it to auth
until the web client serves it; Kong serves no files).

It reads the token from the URL's fragment, takes it out of the address bar, posts it to
``POST /api/v1/auth/verify-email`` and shows the answer's ``detail``. Its three files are read
once; paths are relative, so it works under a ``PUBLIC_URL`` with a path. Served with a strict
Content-Security-Policy (its own files only, fetches to its own origin) and no referrer.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_FILES = {
    name: (files("taskflow_auth") / "page" / name).read_bytes()
    for name in ("verify-email.html", "verify-email.js", "verify-email.css")
}
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}

page = Blueprint("verify_page", __name__)


def _serve(name: str) -> Response:
    return Response(_FILES[name], content_type=_TYPES[name.rpartition(".")[2]], headers=HEADERS)


@page.get("/verify-email")
def verify_email_page() -> Response:
    return _serve("verify-email.html")


@page.get("/verify-email.js")
def verify_email_script() -> Response:
    return _serve("verify-email.js")


@page.get("/verify-email.css")
def verify_email_style() -> Response:
    return _serve("verify-email.css")
