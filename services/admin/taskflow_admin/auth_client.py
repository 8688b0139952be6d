"""Calls to auth's internal API (``/internal/users``), with the admin's bearer token forwarded.

Timeouts bound every call; only connection failures are retried (a read that timed out may
have been applied, so it is not repeated); the W3C trace context rides along (the requests
instrumentation adds it), so auth's spans join the admin request's trace. Auth's 404, 409 and
422 come back as the very problem details auth sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests
from flask import Response
from requests.adapters import HTTPAdapter
from taskflow_common.problems import PROBLEM_MEDIA_TYPE, Problem, ServiceUnavailable
from urllib3.util.retry import Retry

PASSED_THROUGH = (400, 401, 403, 404, 409, 422)


class AuthRefused(Problem):
    """Auth answered with a problem the client should see as is."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(status=response.status_code)
        self.response = response

    def to_response(self) -> Response:
        return Response(self.response.content, status=self.response.status_code, mimetype=PROBLEM_MEDIA_TYPE)


class AuthClient:
    """Auth's internal API at ``base_url``.

    Args:
        base_url: auth's own address (``AUTH_URL``).
        timeout_seconds: per call, for connecting and for the answer.
    """

    def __init__(self, base_url: str, *, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_seconds
        self.session = requests.Session()
        retries = Retry(total=2, connect=2, read=0, status=0, other=0, allowed_methods=None, backoff_factor=0.1)
        self.session.mount("http://", HTTPAdapter(max_retries=retries))
        self.session.mount("https://", HTTPAdapter(max_retries=retries))

    def _call(self, method: str, path: str, authorization: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(
                method, f"{self.base_url}{path}", headers={"Authorization": authorization}, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise ServiceUnavailable(
                f"The auth service is unreachable ({type(error).__name__}).", headers={"Retry-After": "1"}
            ) from None
        if response.status_code in PASSED_THROUGH:
            raise AuthRefused(response)
        if not response.ok:
            raise ServiceUnavailable(f"The auth service answered {response.status_code}.", headers={"Retry-After": "1"})
        return response.json()

    def change_user(self, user_id: str, change: dict[str, Any], authorization: str) -> dict[str, Any]:
        """PATCH a user's role/activation; returns auth's record of the user after the change."""
        return self._call("PATCH", f"/internal/users/{user_id}", authorization, json=change)

    def users(self, authorization: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every user, oldest first, page by page."""
        page = 1
        while True:
            body = self._call("GET", "/internal/users", authorization, params={"page": page, "limit": page_size})
            yield from body["items"]
            if page * page_size >= body["total"] or not body["items"]:
                return
            page += 1
