"""Email verification (DESIGN §4 auth, issue 17 §5): single-use, expiring links whose token only
auth's hash of it can match; resends throttled; events as the catalog describes them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.events import EventProbe
from tests.support.infra import Infra

from .conftest import PASSWORD, bearer

AUTH = "/api/v1/auth"


@pytest.fixture
def events(infra: Infra) -> Iterator[EventProbe]:
    probe = EventProbe(infra.rabbitmq_url)
    yield probe
    probe.close()


def _link(events: EventProbe, user_id: str, count: int = 1) -> str:
    found = events.wait_for(
        lambda event: event["type"] == "user.email_verification_requested" and event["subject"] == user_id, count=count
    )
    return found[-1]["data"]["verification_url"]


def _token(link: str) -> str:
    return link.partition("#token=")[2]


def test_sign_up_sends_a_link_whose_token_verifies_the_address_once(
    make_app, events: EventProbe
) -> None:
    app = make_app(public_url="https://taskflow.example/")
    client = app.test_client()
    registered = client.post(f"{AUTH}/register", json={"email": "new@example.com", "password": PASSWORD, "name": "New"}).json
    user_id, headers = registered["user"]["id"], bearer(registered["access_token"])
    assert registered["user"]["email_verified"] is False
    link = _link(events, user_id)
    assert link.startswith("https://taskflow.example/verify-email#token=")
    stored = app.extensions["taskflow_auth.accounts"].users._db()["email_verifications"].find_one({"user_id": user_id})
    assert stored["_id"] == hashlib.sha256(_token(link).encode()).hexdigest()  # only the hash is kept

    assert client.post(f"{AUTH}/verify-email", json={"token": _token(link)}).status_code == 204
    assert client.get(f"{AUTH}/me", headers=headers).json["email_verified"] is True
    [verified] = events.wait_for(lambda event: event["type"] == "user.email_verified" and event["subject"] == user_id)
    assert verified["data"]["email_verified"] is True and "verification_url" not in verified["data"]
    again = client.post(f"{AUTH}/verify-email", json={"token": _token(link)})
    assert again.status_code == 404 and again.mimetype == "application/problem+json"
    assert again.json["type"] == "urn:taskflow:problem:invalid-verification-link"


@pytest.mark.parametrize("token", ["", "x" * 600, 42, None])
def test_a_token_that_is_not_a_string_of_a_sane_length_is_422(client: FlaskClient, token: object) -> None:
    assert client.post(f"{AUTH}/verify-email", json={"token": token}).status_code == 422


@pytest.mark.parametrize("token", ["not-a-token", "A" * 43, "A" * 44])
def test_an_unknown_token_is_404(client: FlaskClient, token: str) -> None:
    assert client.post(f"{AUTH}/verify-email", json={"token": token}).status_code == 404


def test_an_expired_link_is_404_and_changes_nothing(app: Flask, register, events: EventProbe) -> None:
    registered = register()
    user_id = registered["user"]["id"]
    link = _link(events, user_id)
    db = app.extensions["taskflow_auth.accounts"].users._db()
    db["email_verifications"].update_many({"user_id": user_id}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    client = app.test_client()
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(link)}).status_code == 404
    assert client.get(f"{AUTH}/me", headers=bearer(registered["access_token"])).json["email_verified"] is False


def test_a_resend_replaces_the_link_and_is_throttled(make_app, events: EventProbe) -> None:
    app = make_app(verification_resends_per_hour=2)
    client = app.test_client()
    registered = client.post(f"{AUTH}/register", json={"email": "slow@example.com", "password": PASSWORD, "name": "S"}).json
    user_id, headers = registered["user"]["id"], bearer(registered["access_token"])
    first = _link(events, user_id)
    assert client.post(f"{AUTH}/verify-email/resend", headers=headers).status_code == 202
    second = _link(events, user_id, count=2)
    assert second != first
    assert client.post(f"{AUTH}/verify-email/resend", headers=headers).status_code == 202
    throttled = client.post(f"{AUTH}/verify-email/resend", headers=headers)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    third = _link(events, user_id, count=3)
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(first)}).status_code == 404  # replaced
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(second)}).status_code == 404
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(third)}).status_code == 204
    assert client.post(f"{AUTH}/verify-email/resend", headers=headers).status_code == 409
    assert client.post(f"{AUTH}/verify-email/resend").status_code == 401


def test_the_first_admin_from_the_environment_is_verified(make_app) -> None:
    app = make_app(admin_email="boss@example.com", admin_password="a boss passphrase")
    signed_in = app.test_client().post(f"{AUTH}/login", json={"email": "boss@example.com", "password": "a boss passphrase"})
    assert signed_in.json["user"]["email_verified"] is True
