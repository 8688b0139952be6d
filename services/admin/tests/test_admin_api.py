"""The admin routes over the read models, and user changes through auth (DESIGN §4 admin)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

import pytest
from flask import Flask
from taskflow_admin.administration import Administration
from taskflow_admin.upstream import ServiceClient, Upstreams
from taskflow_common.events.envelope import new_event
from taskflow_common.problems import ServiceUnavailable

from tests.support.processes import free_port

from .conftest import ADMIN_EMAIL, AuthServer, Served, bearer

ADMIN = "/api/v1/admin"
ROUTES = [("GET", "/users"), ("GET", "/users/abc"), ("PATCH", "/users/abc"), ("GET", "/stats"), ("GET", "/audit")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_token_and_the_admin_role(admin_app: Flask, auth: AuthServer, method: str, path: str) -> None:
    client = admin_app.test_client()
    user_token = auth.register("plain@example.com")["access_token"]
    assert client.open(ADMIN + path, method=method, json={"role": "user"}).status_code == 401
    forbidden = client.open(ADMIN + path, method=method, json={"role": "user"}, headers=bearer(user_token))
    assert forbidden.status_code == 403
    assert forbidden.mimetype == "application/problem+json"


def test_an_empty_read_model_is_backfilled_from_auth(admin_app: Flask, auth: AuthServer, admin_token: str) -> None:
    for index in range(3):
        auth.register(f"early{index}@example.com", name=f"Early {index}")
    listed = admin_app.test_client().get(f"{ADMIN}/users?limit=10", headers=bearer(admin_token)).json
    assert listed["total"] == 4
    assert {user["email"] for user in listed["items"]} == {ADMIN_EMAIL, *(f"early{i}@example.com" for i in range(3))}
    assert all(user["task_count"] == 0 for user in listed["items"])


def test_tasks_that_predate_admin_are_backfilled_from_tasks(admin_app: Flask, auth: AuthServer, tasks: Served, admin_token: str) -> None:
    owner = auth.register("busy@example.com")
    client = tasks.app.test_client()
    for title, status in (("one", "todo"), ("two", "done"), ("three", "in_progress")):
        created = client.post("/api/v1/tasks", json={"title": title, "status": status}, headers=bearer(owner["access_token"]))
        assert created.status_code == 201
    stats = admin_app.test_client().get(f"{ADMIN}/stats", headers=bearer(admin_token)).json
    assert stats["tasks"]["total"] == 3
    assert stats["tasks"]["by_status"] == {"todo": 1, "in_progress": 1, "done": 1}
    busy = admin_app.test_client().get(f"{ADMIN}/users?q=busy", headers=bearer(admin_token)).json["items"]
    assert busy[0]["task_count"] == 3


def test_users_are_searched_and_filtered(admin_app: Flask, auth: AuthServer, admin_token: str) -> None:
    auth.register("grace@example.com", name="Grace Hopper")
    auth.register("alan@example.com", name="Alan Turing")
    client = admin_app.test_client()
    by_name = client.get(f"{ADMIN}/users?q=HOPPER", headers=bearer(admin_token)).json
    assert [user["email"] for user in by_name["items"]] == ["grace@example.com"]
    admins = client.get(f"{ADMIN}/users?role=admin", headers=bearer(admin_token)).json
    assert [user["email"] for user in admins["items"]] == [ADMIN_EMAIL]
    regex_is_literal = client.get(f"{ADMIN}/users?q=.*", headers=bearer(admin_token)).json
    assert regex_is_literal["total"] == 0
    assert client.get(f"{ADMIN}/users?active=maybe", headers=bearer(admin_token)).status_code == 422


def test_an_id_in_capitals_names_the_same_user(admin_app: Flask, auth: AuthServer, admin_token: str) -> None:
    user = auth.register("caps@example.com")["user"]
    client = admin_app.test_client()
    changed = client.patch(f"{ADMIN}/users/{user['id'].upper()}", json={"role": "admin"}, headers=bearer(admin_token))
    assert changed.status_code == 200 and changed.json["id"] == user["id"]
    assert client.get(f"{ADMIN}/users/{user['id'].upper()}", headers=bearer(admin_token)).json["role"] == "admin"


def test_a_change_is_applied_by_auth_and_shown_at_once(admin_app: Flask, auth: AuthServer, admin_token: str) -> None:
    user = auth.register("rise@example.com")["user"]
    client = admin_app.test_client()
    changed = client.patch(f"{ADMIN}/users/{user['id']}", json={"role": "admin"}, headers=bearer(admin_token))
    assert changed.status_code == 200
    assert changed.json["role"] == "admin" and changed.json["email"] == "rise@example.com"
    assert client.get(f"{ADMIN}/users/{user['id']}", headers=bearer(admin_token)).json["role"] == "admin"
    assert auth.login("rise@example.com", "a user passphrase")


@pytest.mark.parametrize(("user_id", "body", "status"), [
    ("0" * 24, {"role": "admin"}, 404),
    ("not-an-id", {"active": False}, 404),
])
def test_auth_problems_come_back_as_they_were(admin_app: Flask, admin_token: str, user_id: str, body: dict, status: int) -> None:
    response = admin_app.test_client().patch(f"{ADMIN}/users/{user_id}", json=body, headers=bearer(admin_token))
    assert response.status_code == status
    assert response.json["detail"] == "No such user."


def test_demoting_the_last_admin_is_auths_409(admin_app: Flask, auth: AuthServer, admin_token: str) -> None:
    me = auth.app.test_client().get("/api/v1/auth/me", headers=bearer(admin_token)).json
    response = admin_app.test_client().patch(f"{ADMIN}/users/{me['id']}", json={"active": False}, headers=bearer(admin_token))
    assert response.status_code == 409
    assert response.json["type"] == "urn:taskflow:problem:last-active-admin"


@pytest.mark.parametrize("body", [{}, {"role": "root"}, {"email": "x@example.com"}, {"active": "yes"}])
def test_invalid_changes_are_422_before_reaching_auth(admin_app: Flask, admin_token: str, body: dict) -> None:
    response = admin_app.test_client().patch(f"{ADMIN}/users/{'0' * 24}", json=body, headers=bearer(admin_token))
    assert response.status_code == 422


@pytest.mark.parametrize("user_id", ["abc%3Fx=1", "0%3F" + "0" * 22, "%2E%2E", "not-an-id", "0" * 23 + "g"])
@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_a_path_id_that_is_no_objectid_is_404_and_never_travels_to_auth(
    make_admin_app, admin_token: str, user_id: str, method: str
) -> None:
    """Issue 17 §7: auth is unreachable here, so an id sent on to it would come back 503."""
    app = make_admin_app(auth_url="http://127.0.0.1:9")
    app.extensions["taskflow_admin"].read_models.mark_backfilled()
    response = app.test_client().open(f"{ADMIN}/users/{user_id}", method=method, json={"role": "user"},
                                      headers=bearer(admin_token))
    assert response.status_code == 404
    assert response.json["detail"] == "No such user."


def test_the_upstream_path_is_encoded() -> None:
    """Whatever id admin passes on, it is one path segment on the wire (a real HTTP server records it)."""
    seen: list[str] = []
    server = _recording_server(seen)
    try:
        auth = ServiceClient("auth", f"http://127.0.0.1:{server.server_port}", timeout_seconds=5)
        Upstreams(auth, auth).change_user("a?b#c/../d", {}, "Bearer x")
    finally:
        server.server_close()
    assert seen == ["/internal/users/a%3Fb%23c%2F..%2Fd"]


def _recording_server(seen: list[str], *, answer: bool = True) -> HTTPServer:
    """A one-request HTTP server on a free port recording each PATCH path; with ``answer``
    False it closes the connection without answering (an instance dying mid-request)."""

    class Record(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            seen.append(self.path)
            if not answer:
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.handle_request, daemon=True).start()
    return server


def test_a_call_refused_by_one_instance_goes_to_the_next(free_port_url: str) -> None:
    """Issue 21: with auth's instances listed in AUTH_URL, a change made while the first
    restarts (connection refused) is made at the second, not answered 503."""
    seen: list[str] = []
    server = _recording_server(seen)
    try:
        auth = ServiceClient("auth", f"{free_port_url}, http://127.0.0.1:{server.server_port}", timeout_seconds=5)
        Upstreams(auth, auth).change_user("u1", {"role": "user"}, "Bearer x")
    finally:
        server.server_close()
    assert seen == ["/internal/users/u1"]


def test_a_call_that_reached_an_instance_is_not_sent_again_elsewhere(free_port_url: str) -> None:
    """A PATCH cut off after it was sent may have been applied: 503, never a second try."""
    first, second = [], []
    dying, other = _recording_server(first, answer=False), _recording_server(second)
    try:
        auth = ServiceClient(
            "auth", f"http://127.0.0.1:{dying.server_port},http://127.0.0.1:{other.server_port}", timeout_seconds=5
        )
        with pytest.raises(ServiceUnavailable):
            Upstreams(auth, auth).change_user("u1", {"role": "user"}, "Bearer x")
    finally:
        dying.server_close()
        other.server_close()
    assert (first, second) == (["/internal/users/u1"], [])


def test_no_call_goes_out_on_a_kept_alive_connection_the_service_may_be_closing() -> None:
    """gunicorn closes a kept-alive connection after 5 s idle; a call sent on it as it closes is
    cut off after it was sent, so it is a 503, never repeated. This server plays that race on
    every connection's second request: each call must come on a connection of its own."""
    connections: list[int] = []

    class ClosingOnReuse(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def setup(self) -> None:
            super().setup()
            connections.append(0)
            self.index = len(connections) - 1

        def do_PATCH(self) -> None:
            connections[self.index] += 1
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if connections[self.index] > 1:
                self.close_connection = True
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            self.wfile.flush()
            time.sleep(0.3)  # answered, not yet closed: a pooled connection is reused meanwhile

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), ClosingOnReuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        auth = ServiceClient("auth", f"http://127.0.0.1:{server.server_port}", timeout_seconds=5)
        for _ in range(3):
            Upstreams(auth, auth).change_user("u1", {"role": "user"}, "Bearer x")
    finally:
        server.shutdown()
        server.server_close()
    assert connections == [1, 1, 1]


@pytest.fixture
def free_port_url() -> str:
    """The URL of a port nothing listens on (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def test_auth_unreachable_is_503(make_admin_app, admin_token: str) -> None:
    app = make_admin_app(auth_url="http://127.0.0.1:9")
    app.extensions["taskflow_admin"].read_models.mark_backfilled()
    response = app.test_client().patch(f"{ADMIN}/users/{'0' * 24}", json={"role": "user"}, headers=bearer(admin_token))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"


def test_stats_count_users_tasks_and_events(admin_app: Flask, auth: AuthServer, admin_token: str) -> None:
    administration: Administration = admin_app.extensions["taskflow_admin"]
    owner = auth.register("owner@example.com")["user"]["id"]
    handle = administration.projections.handle_task_event
    for index, status in enumerate(["todo", "in_progress", "done", "todo"]):
        handle(new_event("task.created", service="tasks", subject=f"t{index}", data=_task(f"t{index}", owner, status, "2000-01-01T00:00:00Z")))
    handle(new_event("task.deleted", service="tasks", subject="t3", data=_task("t3", owner, "todo", None)))
    stats = admin_app.test_client().get(f"{ADMIN}/stats", headers=bearer(admin_token)).json
    assert stats["users"] == {"total": 2, "active": 2, "admins": 1}
    assert stats["tasks"] == {"total": 3, "by_status": {"todo": 1, "in_progress": 1, "done": 1}, "overdue": 2}
    users = admin_app.test_client().get(f"{ADMIN}/users?q=owner", headers=bearer(admin_token)).json["items"]
    assert users[0]["task_count"] == 3


def _task(task_id: str, owner: str, status: str, due: str | None, version: int = 1) -> dict:
    return {"id": task_id, "title": "T", "description": "", "status": status, "priority": "medium", "due_date": due,
            "tags": [], "owner_id": owner, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "completed_at": None, "version": version}


@pytest.mark.parametrize("since", ["0.5", "1700000000", "2026-01-01", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00"])
def test_audit_since_must_be_an_rfc3339_date_time_with_offset(admin_app: Flask, admin_token: str, since: str) -> None:
    response = admin_app.test_client().get(f"{ADMIN}/audit", query_string={"since": since}, headers=bearer(admin_token))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "since"


def test_audit_since_takes_an_offset_or_z(admin_app: Flask, admin_token: str) -> None:
    for since in ("2026-01-01T00:00:00Z", "2026-01-01T09:30:00.5+09:30"):
        response = admin_app.test_client().get(f"{ADMIN}/audit", query_string={"since": since}, headers=bearer(admin_token))
        assert response.status_code == 200, response.json
