"""Calls to the internal APIs of auth (``/internal/users``) and tasks (``/internal/tasks``),
with the admin's bearer token forwarded.

Timeouts bound every call; only connection failures are retried, on the next instance and in up
to three rounds (a read that timed out may have been applied, so it is not repeated). Each call
has a connection of its own, closed once it is answered (``requests.request`` keeps no pool, and
``Connection: close`` tells the service not to keep it either): one kept alive between admin's
rare calls would sit idle past gunicorn's 5 s keep-alive, and a call sent on it just as gunicorn
closes it is cut off after it was sent, which only a 503 may answer (the keep-alive rule of
k8s/README.md: the client must give up an idle connection first; with no pool it never holds
one). The W3C trace context rides along (the requests instrumentation adds it), so the called
service's spans join the admin request's trace. A 4xx problem the called service answers (auth's
404, 409, 422…) comes back to the client as the very problem details it sent.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests
from flask import Response
from taskflow_common.problems import PROBLEM_MEDIA_TYPE, Problem, ServiceUnavailable
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

PASSED_THROUGH = (400, 401, 403, 404, 409, 422)
CONNECT_ROUNDS = 3
"""Rounds over every instance when each refuses the connection, 0.1 s then 0.2 s apart."""


class UpstreamRefused(Problem):
    """The called service answered with a problem the client should see as is."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(status=response.status_code)
        self.response = response

    def to_response(self) -> Response:
        return Response(self.response.content, status=self.response.status_code, mimetype=PROBLEM_MEDIA_TYPE)


class ServiceClient:
    """Another TaskFlow service's internal API at ``base_url``.

    Args:
        name: the service, for error messages.
        base_url: its own address (``AUTH_URL``, ``TASKS_URL``), not the gateway's; or several,
            comma-separated (each instance of ``make run``): calls go to each in turn, and one
            that refuses the connection (it is restarting) hands the call to the next, which is
            safe for any method since nothing was sent.
        timeout_seconds: per call, for connecting and for the answer.
    """

    def __init__(self, name: str, base_url: str, *, timeout_seconds: float) -> None:
        self.name = name
        self.base_urls = [url.strip().rstrip("/") for url in base_url.split(",") if url.strip()]
        self.timeout = timeout_seconds
        self._turn = itertools.count()

    def call(self, method: str, path: str, authorization: str, **kwargs: Any) -> dict[str, Any]:
        """One call; its JSON body.

        Raises:
            UpstreamRefused: a 4xx problem the client should see unchanged.
            ServiceUnavailable: unreachable, timed out, or a 5xx.
        """
        response = None
        first = next(self._turn) % len(self.base_urls)
        for round_ in range(CONNECT_ROUNDS):
            if round_:
                time.sleep(0.1 * 2 ** (round_ - 1))  # every instance refused: a moment, then again
            for base_url in self.base_urls[first:] + self.base_urls[:first]:
                try:
                    response = requests.request(
                        method, f"{base_url}{path}", timeout=self.timeout,
                        headers={"Authorization": authorization, "Connection": "close"}, **kwargs,
                    )
                    break
                except requests.RequestException as error:
                    if not _never_sent(error):
                        raise self._unavailable(type(error).__name__) from None
            if response is not None:
                break
        else:
            raise self._unavailable("connection refused") from None
        if response.status_code in PASSED_THROUGH:
            raise UpstreamRefused(response)
        if not response.ok:
            raise ServiceUnavailable(f"The {self.name} service answered {response.status_code}.", headers={"Retry-After": "1"})
        return response.json()

    def _unavailable(self, reason: str) -> ServiceUnavailable:
        return ServiceUnavailable(f"The {self.name} service is unreachable ({reason}).", headers={"Retry-After": "1"})

    def pages(self, path: str, authorization: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list (DESIGN §3), page by page."""
        page = 1
        while True:
            body = self.call("GET", path, authorization, params={"page": page, "limit": page_size})
            yield from body["items"]
            if page * page_size >= body["total"] or not body["items"]:
                return
            page += 1


def _never_sent(error: requests.RequestException) -> bool:
    """Whether a failed call never reached the service: no connection could be made."""
    reason = error.args[0].reason if error.args and isinstance(error.args[0], MaxRetryError) else error
    return isinstance(error, requests.ConnectTimeout) or isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class Upstreams:
    """The internal APIs admin uses: auth's users and tasks' task snapshots."""

    def __init__(self, auth: ServiceClient, tasks: ServiceClient) -> None:
        self.auth = auth
        self.tasks = tasks

    def change_user(self, user_id: str, change: dict[str, Any], authorization: str) -> dict[str, Any]:
        """PATCH a user's role/activation at auth; returns auth's record of the user after it."""
        return self.auth.call("PATCH", f"/internal/users/{quote(user_id, safe='')}", authorization, json=change)

    def users(self, authorization: str) -> Iterator[dict[str, Any]]:
        """Every user, oldest first."""
        return self.auth.pages("/internal/users", authorization)

    def task_snapshot_pages(self, authorization: str, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """Every live task's snapshot, in pages of ``page_size`` by id, paged by the last id seen
        (tasks deleted meanwhile shift no live task out of the pages to come, as ``page`` numbers would)."""
        after = None
        while True:
            params = {"limit": page_size, **({"after": after} if after else {})}
            items = self.tasks.call("GET", "/internal/tasks", authorization, params=params)["items"]
            if items:
                yield items
            if len(items) < page_size:
                return
            after = items[-1]["id"]
