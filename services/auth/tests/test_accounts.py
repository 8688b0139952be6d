"""Register, login, refresh, logout, me and password through the auth app (DESIGN §4 auth)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from taskflow_auth.store import EXPIRIES
from taskflow_auth.tokens import refresh_token_hash
from taskflow_common.events import consumer
from taskflow_common.expiry import Sweeper
from taskflow_common.tokens import StaticJWKS, TokenVerifier

from .conftest import PASSWORD, bearer

AUTH = "/api/v1/auth"


def test_register_returns_the_user_and_a_token_pair(client: FlaskClient) -> None:
    response = client.post(f"{AUTH}/register", json={"email": "  Ada@Example.COM ", "password": PASSWORD, "name": " Ada "})
    assert response.status_code == 201
    body = response.json
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["name"] == "Ada"
    assert body["user"]["role"] == "user" and body["user"]["active"] is True
    assert body["user"]["created_at"].endswith("Z")
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"


def test_access_token_has_the_contract_claims(app: Flask, register) -> None:
    token = register()["access_token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "RS256" and header["kid"]
    assert {"iss", "aud", "sub", "role", "iat", "exp", "jti"} <= set(claims)
    assert claims["iss"] == "taskflow-auth" and claims["aud"] == "taskflow"
    assert claims["exp"] - claims["iat"] == 900
    jwks = app.test_client().get(f"{AUTH}/jwks.json").json
    assert TokenVerifier(StaticJWKS(jwks)).verify(token).user_id == claims["sub"]


@pytest.mark.parametrize(
    "extra", [{"role": "admin"}, {"id": "x"}, {"active": False}, {"created_at": "2020-01-01T00:00:00Z"}]
)
def test_register_refuses_fields_it_does_not_take(client: FlaskClient, extra: dict) -> None:
    response = client.post(f"{AUTH}/register", json={"email": "eve@example.com", "password": PASSWORD, "name": "Eve", **extra})
    assert response.status_code == 422
    assert client.post(f"{AUTH}/login", json={"email": "eve@example.com", "password": PASSWORD}).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": {"$ne": ""}, "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@example.com", "password": "short", "name": "A"}, "password"),
        ({"email": "a@example.com", "password": "x" * 129, "name": "A"}, "password"),
        ({"email": "a@example.com", "password": {"$gt": ""}, "name": "A"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "name": ""}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "x" * 101}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "bell\u0007"}, "name"),
        ({"email": "a@example.com", "password": PASSWORD}, "name"),
    ],
)
def test_register_validates_every_field(client: FlaskClient, body: dict, field: str) -> None:
    response = client.post(f"{AUTH}/register", json=body)
    assert response.status_code == 422
    assert field in [error["field"] for error in response.json["errors"]]


def test_password_length_counts_characters_not_bytes(client: FlaskClient) -> None:
    eight_emoji = "😀" * 8
    response = client.post(f"{AUTH}/register", json={"email": "emoji@example.com", "password": eight_emoji, "name": "E"})
    assert response.status_code == 201
    assert client.post(f"{AUTH}/login", json={"email": "emoji@example.com", "password": eight_emoji}).status_code == 200
    assert client.post(f"{AUTH}/register", json={"email": "e2@example.com", "password": "😀" * 129, "name": "E"}).status_code == 422


def test_duplicate_email_differing_only_in_case_is_409(client: FlaskClient, register) -> None:
    register(email="grace@example.com")
    response = client.post(f"{AUTH}/register", json={"email": "GRACE@example.com ", "password": PASSWORD, "name": "G"})
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("password", ["p" * 72, "ü" * 36])
def test_a_72_byte_password_works_and_one_more_character_is_another_password(
    client: FlaskClient, register, password: str
) -> None:
    assert len(password.encode()) == 72
    email = register(password=password)["user"]["email"]
    assert client.post(f"{AUTH}/login", json={"email": email, "password": password}).status_code == 200
    assert client.post(f"{AUTH}/login", json={"email": email, "password": password + "!"}).status_code == 401


@pytest.mark.parametrize("password", ["p" * 73, "ü" * 40, "😀" * 19, "x" * 128])
def test_passwords_over_72_bytes_log_in_only_in_full(client: FlaskClient, register, password: str) -> None:
    assert len(password.encode()) > 72
    email = register(password=password)["user"]["email"]
    assert client.post(f"{AUTH}/login", json={"email": email, "password": password}).status_code == 200
    first_72_bytes = password.encode()[:72].decode(errors="ignore")
    assert client.post(f"{AUTH}/login", json={"email": email, "password": first_72_bytes}).status_code == 401


def test_wrong_password_and_unknown_email_get_the_same_401(client: FlaskClient, register) -> None:
    email = register()["user"]["email"]
    wrong_password = client.post(f"{AUTH}/login", json={"email": email, "password": "not the password"})
    unknown_email = client.post(f"{AUTH}/login", json={"email": "nobody@example.com", "password": "not the password"})
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json == unknown_email.json


@pytest.mark.parametrize(
    ("first", "second"),
    [("jose\u0301@example.com", "jos\u00e9@example.com"), ("ada@xn--bcher-kva.example", "ada@b\u00fccher.example")],
    ids=["decomposed and composed", "punycode and Unicode domain"],
)
def test_two_spellings_of_one_mailbox_are_one_account(client: FlaskClient, register, first: str, second: str) -> None:
    stored = register(email=first)["user"]["email"]
    assert stored == second  # the normalised form (NFC; the domain in Unicode)
    again = client.post(f"{AUTH}/register", json={"email": second, "password": PASSWORD, "name": "G"})
    assert again.status_code == 409
    for spelling in (first, second):
        assert client.post(f"{AUTH}/login", json={"email": spelling, "password": PASSWORD}).status_code == 200


def test_login_email_is_normalized(client: FlaskClient, register) -> None:
    register(email="lin@example.com")
    assert client.post(f"{AUTH}/login", json={"email": " LIN@Example.com", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize("email", [{"$ne": ""}, {"$gt": ""}, ["a@example.com"], None, 42])
def test_operator_objects_in_login_are_422_and_match_nobody(client: FlaskClient, register, email: object) -> None:
    register()
    response = client.post(f"{AUTH}/login", json={"email": email, "password": {"$ne": ""}})
    assert response.status_code == 422


def test_refresh_rotates_and_the_used_token_is_dead(client: FlaskClient, register) -> None:
    first = register()["refresh_token"]
    rotated = client.post(f"{AUTH}/refresh", json={"refresh_token": first})
    assert rotated.status_code == 200
    second = rotated.json["refresh_token"]
    assert second != first
    assert client.get(f"{AUTH}/me", headers=bearer(rotated.json["access_token"])).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(client: FlaskClient, register) -> None:
    first = register()["refresh_token"]
    second = client.post(f"{AUTH}/refresh", json={"refresh_token": first}).json["refresh_token"]
    third = client.post(f"{AUTH}/refresh", json={"refresh_token": second}).json["refresh_token"]
    reuse = client.post(f"{AUTH}/refresh", json={"refresh_token": first})
    assert reuse.status_code == 401
    assert client.post(f"{AUTH}/refresh", json={"refresh_token": third}).status_code == 401


@pytest.mark.parametrize("window", ["as it comes", "widened", "piecemeal revocation"])
def test_eight_concurrent_refreshes_with_one_token_rotate_it_at_most_once_and_kill_the_family(
    app: Flask, register, monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    """Presenting one token eight times at once is reuse: at most one request gets a new pair,
    and whatever refresh token any of them got is dead afterwards (the family is revoked)."""
    token = register()["refresh_token"]
    _open_window(app, monkeypatch, window)
    barrier = threading.Barrier(8)
    responses: list[Any] = []

    def spend() -> None:
        client = app.test_client()
        barrier.wait()
        responses.append(client.post(f"{AUTH}/refresh", json={"refresh_token": token}))

    spenders = [threading.Thread(target=spend) for _ in range(8)]
    for spender in spenders:
        spender.start()
    for spender in spenders:
        spender.join(30)
    statuses = sorted(response.status_code for response in responses)
    assert statuses in ([401] * 8, [200] + [401] * 7)
    client = app.test_client()
    for response in responses:
        if response.status_code == 200:
            assert client.post(f"{AUTH}/refresh", json={"refresh_token": response.json["refresh_token"]}).status_code == 401


def _slow_token_inserts(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen the window between spending a refresh token and storing its successor, where a
    concurrent revocation can miss the successor."""
    tokens = app.extensions["taskflow_auth.accounts"].refresh_tokens
    add = tokens.add

    def slow_add(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)
        add(*args, **kwargs)

    monkeypatch.setattr(tokens, "add", slow_add)


def _piecemeal_revocations(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Revoke many tokens the way MongoDB's update_many may: it picks the tokens it will reach,
    and a token stored meanwhile is not among them."""
    tokens = app.extensions["taskflow_auth.accounts"].refresh_tokens

    def piecemeal(field: str) -> Callable[[str], None]:
        def revoke(value: str) -> None:
            picked = [token["_id"] for token in tokens._tokens.find({field: value, "revoked_at": None}, {"_id": 1})]
            time.sleep(0.4)
            for token_id in picked:
                revoked = {"$set": {"revoked_at": datetime.now(UTC)}}
                tokens._tokens.update_one({"_id": token_id, "revoked_at": None}, revoked)
        return revoke

    monkeypatch.setattr(tokens, "revoke_user", piecemeal("user_id"))
    update_many = tokens._tokens.update_many
    revoke_family = tokens.revoke_family

    def family_piecemeal(family_id: str) -> None:
        monkeypatch.setattr(tokens._tokens, "update_many", lambda *_: piecemeal("family_id")(family_id))
        try:
            revoke_family(family_id)
        finally:
            monkeypatch.setattr(tokens._tokens, "update_many", update_many)

    monkeypatch.setattr(tokens, "revoke_family", family_piecemeal)


def _open_window(app: Flask, monkeypatch: pytest.MonkeyPatch, window: str) -> None:
    """Set up a race test's ``window``: ``as it comes``, ``widened`` (slow token inserts), or
    ``piecemeal revocation`` (widened, and revocations that miss tokens stored meanwhile)."""
    if window != "as it comes":
        _slow_token_inserts(app, monkeypatch)
    if window == "piecemeal revocation":
        _piecemeal_revocations(app, monkeypatch)


@pytest.mark.parametrize("window", ["as it comes", "widened", "piecemeal revocation"])
def test_logout_all_racing_a_refresh_leaves_no_live_refresh_token(
    app: Flask, register, monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    """logout-all at the same moment as a refresh: the rotation may or may not answer 200, but
    no refresh token of the user survives, the rotated one included."""
    _open_window(app, monkeypatch, window)
    for _ in range(5):
        registered = register()
        token, access = registered["refresh_token"], registered["access_token"]
        barrier = threading.Barrier(2)
        rotated: list[Any] = []

        def refresh() -> None:
            client = app.test_client()
            barrier.wait()
            rotated.append(client.post(f"{AUTH}/refresh", json={"refresh_token": token}))

        def logout_all() -> None:
            client = app.test_client()
            barrier.wait()
            assert client.post(f"{AUTH}/logout-all", headers=bearer(access)).status_code == 204

        threads = [threading.Thread(target=refresh), threading.Thread(target=logout_all)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        client = app.test_client()
        if rotated[0].status_code == 200:  # first: presenting the spent token would revoke the family anyway
            assert client.post(f"{AUTH}/refresh", json={"refresh_token": rotated[0].json["refresh_token"]}).status_code == 401
        assert client.post(f"{AUTH}/refresh", json={"refresh_token": token}).status_code == 401


@pytest.mark.parametrize("change", ["password change", "logout-all"])
def test_a_refresh_reading_the_user_right_after_a_change_issues_no_live_token(
    app: Flask, register, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Found by an attack: a rotation that read the user right after the write of a password
    change or logout-all, before its refresh tokens were ended, saw the new access generation
    with the old session generation and issued an access token of the new generation, valid
    everywhere for 15 minutes. Both generations are raised in that one write now."""
    registered = register()
    accounts = app.extensions["taskflow_auth.accounts"]
    update, rotated = accounts.users.update, []

    def update_then_refresh(*args: Any, **kwargs: Any) -> Any:
        written = update(*args, **kwargs)
        if not rotated:
            rotated.append(app.test_client().post(f"{AUTH}/refresh", json={"refresh_token": registered["refresh_token"]}))
        return written

    monkeypatch.setattr(accounts.users, "update", update_then_refresh)
    client = app.test_client()
    if change == "password change":
        body = {"current_password": PASSWORD, "new_password": PASSWORD + "-new"}
        assert client.post(f"{AUTH}/password", json=body, headers=bearer(registered["access_token"])).status_code == 204
    else:
        assert client.post(f"{AUTH}/logout-all", headers=bearer(registered["access_token"])).status_code == 204
    assert rotated[0].status_code == 401, rotated[0].json


def test_reuse_revokes_only_that_login_family(client: FlaskClient, register) -> None:
    registered = register()
    other_session = client.post(f"{AUTH}/login", json={"email": registered["user"]["email"], "password": PASSWORD}).json
    first = registered["refresh_token"]
    client.post(f"{AUTH}/refresh", json={"refresh_token": first})
    client.post(f"{AUTH}/refresh", json={"refresh_token": first})
    assert client.post(f"{AUTH}/refresh", json={"refresh_token": other_session["refresh_token"]}).status_code == 200


@pytest.mark.parametrize("token", ["", "x" * 513, "not-a-token"])
def test_unknown_refresh_tokens_are_refused(client: FlaskClient, token: str) -> None:
    assert client.post(f"{AUTH}/refresh", json={"refresh_token": token}).status_code in (401, 422)


def test_a_refresh_token_is_not_an_access_token(client: FlaskClient, register) -> None:
    refresh_token = register()["refresh_token"]
    assert client.get(f"{AUTH}/me", headers=bearer(refresh_token)).status_code == 401


def test_logout_revokes_that_refresh_token(client: FlaskClient, register) -> None:
    token = register()["refresh_token"]
    assert client.post(f"{AUTH}/logout", json={"refresh_token": token}).status_code == 204
    assert client.post(f"{AUTH}/refresh", json={"refresh_token": token}).status_code == 401
    assert client.post(f"{AUTH}/logout", json={"refresh_token": token}).status_code == 204


def test_logout_all_revokes_every_refresh_token_of_the_user(client: FlaskClient, register) -> None:
    registered = register()
    second = client.post(f"{AUTH}/login", json={"email": registered["user"]["email"], "password": PASSWORD}).json
    assert client.post(f"{AUTH}/logout-all", headers=bearer(second["access_token"])).status_code == 204
    for token in (registered["refresh_token"], second["refresh_token"]):
        assert client.post(f"{AUTH}/refresh", json={"refresh_token": token}).status_code == 401


def test_me_and_rename(client: FlaskClient, register) -> None:
    registered = register(name="Ada")
    headers = bearer(registered["access_token"])
    assert client.get(f"{AUTH}/me", headers=headers).json == registered["user"]
    renamed = client.patch(f"{AUTH}/me", json={"name": "Ada Lovelace"}, headers=headers)
    assert renamed.status_code == 200 and renamed.json["name"] == "Ada Lovelace"
    assert client.get(f"{AUTH}/me", headers=headers).json["name"] == "Ada Lovelace"


@pytest.mark.parametrize("body", [{"role": "admin"}, {"name": "X", "role": "admin"}, {"email": "x@example.com"}, {"active": False}])
def test_me_cannot_change_role_email_or_activation(client: FlaskClient, register, body: dict) -> None:
    registered = register()
    headers = bearer(registered["access_token"])
    assert client.patch(f"{AUTH}/me", json=body, headers=headers).status_code == 422
    assert client.get(f"{AUTH}/me", headers=headers).json == registered["user"]


def test_me_needs_a_token(client: FlaskClient) -> None:
    response = client.get(f"{AUTH}/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_password_change_needs_the_current_password_and_revokes_sessions(client: FlaskClient, register) -> None:
    registered = register()
    headers = bearer(registered["access_token"])
    wrong = client.post(f"{AUTH}/password", json={"current_password": "not it at all", "new_password": "a new passphrase"}, headers=headers)
    assert wrong.status_code == 403
    changed = client.post(f"{AUTH}/password", json={"current_password": PASSWORD, "new_password": "a new passphrase"}, headers=headers)
    assert changed.status_code == 204
    assert client.post(f"{AUTH}/refresh", json={"refresh_token": registered["refresh_token"]}).status_code == 401
    email = registered["user"]["email"]
    assert client.post(f"{AUTH}/login", json={"email": email, "password": PASSWORD}).status_code == 401
    assert client.post(f"{AUTH}/login", json={"email": email, "password": "a new passphrase"}).status_code == 200


def test_jwks_is_public_and_cacheable(client: FlaskClient) -> None:
    response = client.get(f"{AUTH}/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    [key] = response.json["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    assert "d" not in key and "p" not in key


@pytest.mark.parametrize("name", ["Ada\u200cKing", "مریم\u200cمیرزاخانی", "Ada 👩\u200d💻", "Ada \U0002ebf0"])
def test_names_may_hold_any_printable_character(client: FlaskClient, register, name: str) -> None:
    # Joiners (Cf) are part of Persian and emoji names; code points newer than the server's Unicode
    # tables (Cn) are still text. Only control characters (Cc) are refused.
    response = client.patch(f"{AUTH}/me", json={"name": name}, headers=bearer(register()["access_token"]))
    assert response.status_code == 200, response.json
    assert response.json["name"] == name


@pytest.mark.parametrize("name", ["Ada\nKing", "Ada\x00", "\x85Ada", "   ", "\u3000", " " + "x" * 100])
def test_names_with_control_characters_blank_or_over_100_as_sent_are_422(client: FlaskClient, register, name: str) -> None:
    response = client.patch(f"{AUTH}/me", json={"name": name}, headers=bearer(register()["access_token"]))
    assert response.status_code == 422


def test_names_are_stored_without_surrounding_spaces(client: FlaskClient, register) -> None:
    response = client.patch(f"{AUTH}/me", json={"name": "  Ada King \u3000"}, headers=bearer(register()["access_token"]))
    assert response.json["name"] == "Ada King"


def test_housekeeping_removes_expired_tokens_closed_failure_windows_and_ended_leases(app: Flask, register) -> None:
    """What auth declares as expiring is swept on FerretDB; what is live stays."""
    db = app.extensions["taskflow_auth.accounts"].users._db()
    live_token = register()["refresh_token"]
    later = datetime.now(UTC) + timedelta(hours=1)
    db["refresh_tokens"].insert_one({"_id": "expired", "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    db["login_failures"].insert_many([
        {"_id": "account:closed@example.com", "count": 5, "window_ends": datetime.now(UTC) - timedelta(seconds=1)},
        {"_id": "account:open@example.com", "count": 5, "window_ends": later},
    ])
    db["locks"].insert_one({"_id": "ended", "owner": "gone", "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    Sweeper(lambda: db, [*EXPIRIES, *consumer.EXPIRIES]).sweep()
    assert db["refresh_tokens"].count_documents({"_id": "expired"}) == 0
    assert db["refresh_tokens"].count_documents({"_id": refresh_token_hash(live_token)}) == 1
    assert [failure["_id"] for failure in db["login_failures"].find()] == ["account:open@example.com"]
    assert db["locks"].count_documents({}) == 0
