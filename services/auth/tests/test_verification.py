"""Email verification (DESIGN §4 auth, issue 17 §5): single-use, expiring links whose token only
auth's hash of it can match; resends throttled; events as the catalog describes them."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from taskflow_common.email_links import link_token, load_key

from tests.support.events import EventProbe
from tests.support.infra import Infra

from .conftest import PASSWORD, bearer

AUTH = "/api/v1/auth"


@pytest.fixture
def events(infra: Infra) -> Iterator[EventProbe]:
    probe = EventProbe(infra.rabbitmq_url)
    yield probe
    probe.close()


def _link(app: Flask, events: EventProbe, user_id: str, count: int = 1) -> str:
    """The link notify would mail for the newest request: the event's page and nonce, the token
    derived with the key the app shares with notify."""
    found = events.wait_for(
        lambda event: event["type"] == "user.email_verification_requested" and event["subject"] == user_id, count=count
    )
    data = found[-1]["data"]
    key = load_key(app.extensions["taskflow_auth.accounts"].settings.email_link_key_file, generate_missing=False)
    token = link_token(key, user_id=user_id, email=data["email"], nonce=data["verification_nonce"],
                       expires_at=data["verification_expires_at"])
    return f"{data['verification_page']}#token={token}"


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
    link = _link(app, events, user_id)
    assert link.startswith("https://taskflow.example/verify-email#token=")
    stored = app.extensions["taskflow_auth.accounts"].users._db()["verification_links"].find_one({"_id": user_id})
    assert stored["token_hash"] == hashlib.sha256(_token(link).encode()).hexdigest()  # only the hash is kept
    assert _token(link) not in json.dumps(events.seen)  # the event carries the nonce, not the token

    assert client.post(f"{AUTH}/verify-email", json={"token": _token(link)}).status_code == 204
    assert client.get(f"{AUTH}/me", headers=headers).json["email_verified"] is True
    [verified] = events.wait_for(lambda event: event["type"] == "user.email_verified" and event["subject"] == user_id)
    assert verified["data"]["email_verified"] is True and "verification_nonce" not in verified["data"]
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
    link = _link(app, events, user_id)
    db = app.extensions["taskflow_auth.accounts"].users._db()
    db["verification_links"].update_many({"_id": user_id}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    client = app.test_client()
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(link)}).status_code == 404
    assert client.get(f"{AUTH}/me", headers=bearer(registered["access_token"])).json["email_verified"] is False


def test_a_resend_replaces_the_link_and_is_throttled(make_app, events: EventProbe) -> None:
    app = make_app(verification_resends_per_hour=2)
    client = app.test_client()
    registered = client.post(f"{AUTH}/register", json={"email": "slow@example.com", "password": PASSWORD, "name": "S"}).json
    user_id, headers = registered["user"]["id"], bearer(registered["access_token"])
    first = _link(app, events, user_id)
    assert client.post(f"{AUTH}/verify-email/resend", headers=headers).status_code == 202
    second = _link(app, events, user_id, count=2)
    assert second != first
    assert client.post(f"{AUTH}/verify-email/resend", headers=headers).status_code == 202
    throttled = client.post(f"{AUTH}/verify-email/resend", headers=headers)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    third = _link(app, events, user_id, count=3)
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(first)}).status_code == 404  # replaced
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(second)}).status_code == 404
    assert client.post(f"{AUTH}/verify-email", json={"token": _token(third)}).status_code == 204
    assert client.post(f"{AUTH}/verify-email/resend", headers=headers).status_code == 409
    assert client.post(f"{AUTH}/verify-email/resend").status_code == 401


def test_the_first_admin_from_the_environment_is_verified(make_app) -> None:
    app = make_app(admin_email="boss@example.com", admin_password="a boss passphrase")
    signed_in = app.test_client().post(f"{AUTH}/login", json={"email": "boss@example.com", "password": "a boss passphrase"})
    assert signed_in.json["user"]["email_verified"] is True


def test_parallel_uses_of_one_link_verify_once(app: Flask, register, events: EventProbe) -> None:
    token = _token(_link(app, events, register()["user"]["id"]))
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def use() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(f"{AUTH}/verify-email", json={"token": token}).status_code)

    threads = [threading.Thread(target=use) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [204] + [404] * 9


def test_parallel_resends_leave_one_open_link(make_app, events: EventProbe) -> None:
    app = make_app(verification_resends_per_hour=10)
    client = app.test_client()
    registered = client.post(f"{AUTH}/register", json={"email": "racy@example.com", "password": PASSWORD, "name": "R"}).json
    user_id, headers = registered["user"]["id"], bearer(registered["access_token"])
    barrier = threading.Barrier(5)

    def resend() -> None:
        sender = app.test_client()
        barrier.wait()
        assert sender.post(f"{AUTH}/verify-email/resend", headers=headers).status_code == 202

    threads = [threading.Thread(target=resend) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    found = events.wait_for(
        lambda event: event["type"] == "user.email_verification_requested" and event["subject"] == user_id, count=6
    )
    key = load_key(app.extensions["taskflow_auth.accounts"].settings.email_link_key_file, generate_missing=False)
    tokens = [
        link_token(key, user_id=user_id, email=event["data"]["email"], nonce=event["data"]["verification_nonce"],
                   expires_at=event["data"]["verification_expires_at"])
        for event in found
    ]
    statuses = [client.post(f"{AUTH}/verify-email", json={"token": token}).status_code for token in tokens]
    assert sorted(statuses) == [204] + [404] * 5
