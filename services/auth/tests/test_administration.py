"""The first admin, and the internal API the admin service uses (issue 4 §6, §7)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from taskflow_auth.settings import AuthSettings
from taskflow_common.settings import InvalidSettings

from .conftest import PASSWORD, bearer

AUTH = "/api/v1/auth"
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "the admin passphrase"


@pytest.fixture
def admin_app(make_app) -> Flask:
    return make_app(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD)


@pytest.fixture
def admin_client(admin_app: Flask) -> FlaskClient:
    return admin_app.test_client()


def login(client: FlaskClient, email: str, password: str) -> dict:
    response = client.post(f"{AUTH}/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.json
    return response.json


def test_the_first_admin_comes_from_the_environment(admin_client: FlaskClient) -> None:
    assert login(admin_client, ADMIN_EMAIL, ADMIN_PASSWORD)["user"]["role"] == "admin"


def test_creating_the_first_admin_again_is_idempotent_and_keeps_the_password(admin_app: Flask) -> None:
    accounts = admin_app.extensions["taskflow_auth.accounts"]
    first = accounts.create_first_admin(ADMIN_EMAIL, ADMIN_PASSWORD)
    again = accounts.create_first_admin(ADMIN_EMAIL, "another passphrase")
    assert again["_id"] == first["_id"] and again["version"] == first["version"]
    assert accounts.hasher.verify(ADMIN_PASSWORD, accounts.users.by_id(str(first["_id"]))["password_hash"])


def test_start_up_never_makes_an_account_someone_registered_an_admin(
    app: Flask, client: FlaskClient, register, make_app, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever registers ADMIN_EMAIL first keeps a plain account: starting auth with it changes
    nothing and says why, once."""
    squatter = register(email="root-to-be@example.com")["user"]
    prefix = app.extensions["taskflow_auth.accounts"].settings.mongodb_db_prefix
    with caplog.at_level(logging.ERROR, logger="taskflow_auth"):
        restarted = make_app(admin_email="root-to-be@example.com", admin_password=ADMIN_PASSWORD, mongodb_db_prefix=prefix)
    assert [record.message for record in caplog.records if "not an admin" in record.message] == [
        "root-to-be@example.com (ADMIN_EMAIL) is an existing account that is not an admin; it is left unchanged. "
        "If it is yours, promote it: python -m taskflow_auth.cli promote root-to-be@example.com"
    ]
    stored = restarted.extensions["taskflow_auth.accounts"].users.by_id(squatter["id"])
    assert stored["role"] == "user" and stored["version"] == 1
    assert login(client, "root-to-be@example.com", PASSWORD)["user"]["role"] == "user"
    assert client.post(f"{AUTH}/login", json={"email": "root-to-be@example.com", "password": ADMIN_PASSWORD}).status_code == 401


def test_start_up_never_reactivates_the_first_admin(admin_app: Flask, make_app) -> None:
    accounts = admin_app.extensions["taskflow_auth.accounts"]
    first = accounts.users.by_email(ADMIN_EMAIL)
    accounts.create_first_admin("second-admin@example.com", ADMIN_PASSWORD)
    accounts.change(None, str(first["_id"]), role=None, active=False)
    prefix = accounts.settings.mongodb_db_prefix
    make_app(admin_email=ADMIN_EMAIL, admin_password=ADMIN_PASSWORD, mongodb_db_prefix=prefix)
    assert accounts.users.by_id(str(first["_id"]))["active"] is False


def test_promote_is_the_operators_way_and_keeps_password_and_activation(app: Flask, client: FlaskClient, register) -> None:
    assert register(email="promote-me@example.com")["user"]["role"] == "user"
    promoted = app.extensions["taskflow_auth.accounts"].promote("promote-me@example.com")
    assert promoted["role"] == "admin" and promoted["active"] is True
    assert login(client, "promote-me@example.com", PASSWORD)["user"]["role"] == "admin"


@pytest.fixture
def admin_token(admin_client: FlaskClient) -> str:
    return login(admin_client, ADMIN_EMAIL, ADMIN_PASSWORD)["access_token"]


def register_user(client: FlaskClient, email: str) -> dict:
    response = client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "U"})
    assert response.status_code == 201
    return response.json


def test_internal_routes_require_an_admin(admin_client: FlaskClient) -> None:
    user = register_user(admin_client, "plain@example.com")
    assert admin_client.get("/internal/users").status_code == 401
    assert admin_client.get("/internal/users", headers=bearer(user["access_token"])).status_code == 403
    patch = admin_client.patch(f"/internal/users/{user['user']['id']}", json={"role": "admin"}, headers=bearer(user["access_token"]))
    assert patch.status_code == 403


def test_users_are_listed_page_by_page_oldest_first(admin_client: FlaskClient, admin_token: str) -> None:
    emails = [f"page{i}@example.com" for i in range(5)]
    for email in emails:
        register_user(admin_client, email)
    first = admin_client.get("/internal/users?page=1&limit=4", headers=bearer(admin_token)).json
    second = admin_client.get("/internal/users?page=2&limit=4", headers=bearer(admin_token)).json
    assert first["total"] == second["total"] == 6
    listed = [item["email"] for item in first["items"] + second["items"]]
    assert listed == [ADMIN_EMAIL, *emails]
    assert {"version", "updated_at", "last_login_at"} <= set(first["items"][0])


def test_promoting_a_user_lets_their_next_token_be_an_admins(admin_client: FlaskClient, admin_token: str) -> None:
    user = register_user(admin_client, "rising@example.com")
    changed = admin_client.patch(f"/internal/users/{user['user']['id']}", json={"role": "admin"}, headers=bearer(admin_token))
    assert changed.status_code == 200
    assert changed.json["role"] == "admin" and changed.json["version"] == 2
    assert login(admin_client, "rising@example.com", PASSWORD)["user"]["role"] == "admin"


def test_deactivating_a_user_blocks_login_refresh_and_their_tokens(admin_client: FlaskClient, admin_token: str) -> None:
    user = register_user(admin_client, "leaving@example.com")
    response = admin_client.patch(f"/internal/users/{user['user']['id']}", json={"active": False}, headers=bearer(admin_token))
    assert response.status_code == 200 and response.json["active"] is False
    denied = admin_client.post(f"{AUTH}/login", json={"email": "leaving@example.com", "password": PASSWORD})
    assert denied.status_code == 403
    assert admin_client.post(f"{AUTH}/refresh", json={"refresh_token": user["refresh_token"]}).status_code == 401
    assert admin_client.get(f"{AUTH}/me", headers=bearer(user["access_token"])).status_code == 403
    wrong_password = admin_client.post(f"{AUTH}/login", json={"email": "leaving@example.com", "password": "not the password"})
    assert wrong_password.status_code == 401  # a wrong password never learns the account's state


def test_reactivating_lets_the_user_in_again(admin_client: FlaskClient, admin_token: str) -> None:
    user = register_user(admin_client, "back@example.com")
    path = f"/internal/users/{user['user']['id']}"
    admin_client.patch(path, json={"active": False}, headers=bearer(admin_token))
    assert admin_client.patch(path, json={"active": True}, headers=bearer(admin_token)).json["active"] is True
    assert login(admin_client, "back@example.com", PASSWORD)


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(admin_client: FlaskClient, admin_token: str) -> None:
    me = admin_client.get(f"{AUTH}/me", headers=bearer(admin_token)).json
    for change in ({"role": "user"}, {"active": False}, {"role": "user", "active": False}):
        response = admin_client.patch(f"/internal/users/{me['id']}", json=change, headers=bearer(admin_token))
        assert response.status_code == 409
        assert response.mimetype == "application/problem+json"
    assert admin_client.get(f"{AUTH}/me", headers=bearer(admin_token)).json["role"] == "admin"


def test_two_admins_demoting_each_other_at_once_leave_one_admin(admin_client: FlaskClient, admin_token: str) -> None:
    other = register_user(admin_client, "second-admin@example.com")
    admin_client.patch(f"/internal/users/{other['user']['id']}", json={"role": "admin"}, headers=bearer(admin_token))
    other_token = login(admin_client, "second-admin@example.com", PASSWORD)["access_token"]
    me = admin_client.get(f"{AUTH}/me", headers=bearer(admin_token)).json
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def demote(target: str, token: str) -> None:
        client = admin_client.application.test_client()
        barrier.wait()
        statuses.append(client.patch(f"/internal/users/{target}", json={"role": "user"}, headers=bearer(token)).status_code)

    threads = [
        threading.Thread(target=demote, args=(other["user"]["id"], admin_token)),
        threading.Thread(target=demote, args=(me["id"], other_token)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # The second to be applied finds its actor demoted: its token is of an earlier access
    # generation (401), or, when it passed authentication before, auth re-checks the actor (403).
    assert sorted(statuses)[0] == 200 and sorted(statuses)[1] in (401, 403), statuses


@pytest.mark.parametrize("user_id", ["123", "z" * 24, "0" * 24])
def test_unknown_or_malformed_ids_are_404(admin_client: FlaskClient, admin_token: str, user_id: str) -> None:
    assert admin_client.get(f"/internal/users/{user_id}", headers=bearer(admin_token)).status_code == 404
    assert admin_client.patch(f"/internal/users/{user_id}", json={"role": "user"}, headers=bearer(admin_token)).status_code == 404


@pytest.mark.parametrize("body", [{}, {"role": "superuser"}, {"active": "no"}, {"role": "admin", "email": "x@example.com"}])
def test_invalid_changes_are_422(admin_client: FlaskClient, admin_token: str, body: dict) -> None:
    user = register_user(admin_client, "target422@example.com")
    assert admin_client.patch(f"/internal/users/{user['user']['id']}", json=body, headers=bearer(admin_token)).status_code == 422


@pytest.mark.parametrize("password", ["", "seven77", "x" * 129])
def test_an_admin_password_outside_a_users_length_rule_is_refused(password: str) -> None:
    refusal = r"^auth: refused setting: ADMIN_PASSWORD: must be 8 to 128 characters long$"
    with pytest.MonkeyPatch.context() as environment, pytest.raises(InvalidSettings, match=refusal):
        environment.setenv("ADMIN_EMAIL", ADMIN_EMAIL)
        environment.setenv("ADMIN_PASSWORD", password)
        AuthSettings.load()


@pytest.mark.parametrize(("email", "password"), [("admin@example.com", "a real passphrase"), (ADMIN_EMAIL, "change-me")])
def test_production_refuses_the_example_admin(email: str, password: str, tmp_path: Path) -> None:
    refusal = r"^auth: refused setting: .*must not be deploy/compose.env.example's in production$"
    with pytest.MonkeyPatch.context() as environment, pytest.raises(InvalidSettings, match=refusal):
        _production(environment, tmp_path, PUBLIC_URL="https://taskflow.example")
        environment.setenv("ADMIN_EMAIL", email)
        environment.setenv("ADMIN_PASSWORD", password)
        AuthSettings.load()



def _production(environment: pytest.MonkeyPatch, tmp_path: Path, **values: str) -> None:
    jwt_key, link_key = tmp_path / "jwt.pem", tmp_path / "email-link.key"
    jwt_key.write_text("the signing key's file only needs to exist for these checks")
    link_key.write_text("ab" * 32)
    environment.setenv("TASKFLOW_ENV", "production")
    environment.setenv("RABBITMQ_URL", "amqp://auth:secret@broker:5672/%2F")
    environment.setenv("JWT_PRIVATE_KEY_FILE", str(jwt_key))
    environment.setenv("EMAIL_LINK_KEY_FILE", str(link_key))
    for name, value in values.items():
        environment.setenv(name, value)


@pytest.mark.parametrize(
    ("public_url", "refusal"),
    [
        (None, "PUBLIC_URL is required"),
        ("http://taskflow.example.org", "must be https"),
        ("https://taskflow.example.com", "placeholder"),
        ("https://user:pw@taskflow.example.org", "no user"),
        ("https://taskflow.example.org/?ref=mail", "no user, password, query"),
        ("https://taskflow.example.org/#/", "fragment"),
        ("https://taskflow.example.org/?", "no user, password, query"),
        ("https://taskflow.example.org#", "fragment"),
        ("https://taskflow.example.com.", "placeholder"),
        ("https://taskflow.example.org;x", "DNS name"),
        ("https://*.example.org", "DNS name"),
    ],
)
def test_production_refuses_a_public_url_that_would_break_or_leak_its_links(
    public_url: str | None, refusal: str, tmp_path: Path
) -> None:
    with pytest.MonkeyPatch.context() as environment, pytest.raises(InvalidSettings, match=refusal):
        _production(environment, tmp_path, **({"PUBLIC_URL": public_url} if public_url else {}))
        AuthSettings.load()


@pytest.mark.parametrize("public_url", ["https://tasks.example.org/team/", "http://localhost:8000"])
def test_production_takes_an_https_base_or_this_machine(public_url: str, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as environment:
        _production(environment, tmp_path, PUBLIC_URL=public_url)
        assert AuthSettings.load().link_base == public_url.rstrip("/")


@pytest.mark.parametrize("content", ["change-me", "00" * 4, ""])
def test_a_link_key_file_without_a_key_is_refused_at_start_up_without_repeating_it(content: str, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as environment, pytest.raises(InvalidSettings, match="at least 32 random bytes") as refused:
        _production(environment, tmp_path, PUBLIC_URL="https://tasks.example.org")
        key_file = tmp_path / "link.key"
        key_file.write_text(content)
        environment.setenv("EMAIL_LINK_KEY_FILE", str(key_file))
        AuthSettings.load()
    assert "change-me" not in str(refused.value)
