"""The auth contract through the gateway (DESIGN §4 auth, issue 4), and its events."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.support.accounts import PASSWORD, sign_in, sign_up
from tests.support.events import EventProbe
from tests.support.fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.system import Client, System

pytestmark = pytest.mark.e2e
AUTH = "/api/v1/auth"


def test_register_login_refresh_logout_journey(gateway: Client) -> None:
    email = f"journey-{uuid.uuid4().hex[:8]}@example.com"
    registered = gateway.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "Journey"})
    assert registered.status_code == 201
    assert registered.headers["X-Request-ID"]
    logged_in = gateway.post(f"{AUTH}/login", json={"email": email.upper(), "password": PASSWORD})
    assert logged_in.status_code == 200
    tokens = logged_in.json()
    me = gateway.get(f"{AUTH}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json() == registered.json()["user"]
    refreshed = gateway.post(f"{AUTH}/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert gateway.post(f"{AUTH}/logout", json={"refresh_token": refreshed.json()["refresh_token"]}).status_code == 204
    assert gateway.post(f"{AUTH}/refresh", json={"refresh_token": refreshed.json()["refresh_token"]}).status_code == 401


def test_malformed_json_is_400_problem_through_the_gateway(gateway: Client) -> None:
    response = gateway.post(f"{AUTH}/login", data='{"email": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_non_json_body_is_415(gateway: Client) -> None:
    response = gateway.post(f"{AUTH}/login", data="email=a", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_role_in_register_is_refused(gateway: Client) -> None:
    email = f"climber-{uuid.uuid4().hex[:8]}@example.com"
    response = gateway.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "C", "role": "admin"})
    assert response.status_code == 422
    assert gateway.post(f"{AUTH}/login", json={"email": email, "password": PASSWORD}).status_code == 401


def test_the_first_admin_exists(gateway: Client) -> None:
    assert sign_in(gateway, ADMIN_EMAIL, ADMIN_PASSWORD).user["role"] == "admin"


def _unsigned(claims: dict) -> str:
    encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{encode({'alg': 'none', 'typ': 'at+jwt'})}.{encode(claims)}."


def test_forged_and_misused_tokens_are_401_at_every_service(gateway: Client) -> None:
    account = sign_up(gateway)
    claims = {"iss": "taskflow-auth", "aud": "taskflow", "sub": account.id, "role": "admin", "iat": 0, "exp": 4102444800, "jti": "x"}
    for token in (_unsigned(claims), account.refresh_token, account.access_token[:-4] + "AAAA"):
        for path in (f"{AUTH}/me", "/api/v1/auth/logout-all"):
            response = gateway.request("GET" if path.endswith("me") else "POST", path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (path, token[:20])
            assert response.headers["Content-Type"] == "application/problem+json"


def test_login_flood_from_one_client_is_429_with_retry_after(system: System) -> None:
    flooder = Client(system.gateway_url)
    account = sign_up(Client(system.gateway_url))
    statuses = [
        flooder.post(f"{AUTH}/login", json={"email": account.email, "password": f"wrong guess {i}"}).status_code
        for i in range(8)
    ]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    correct = flooder.post(f"{AUTH}/login", json={"email": account.email, "password": PASSWORD})
    assert correct.status_code == 429
    assert int(correct.headers["Retry-After"]) > 0


def test_a_flood_of_wrong_passwords_leaves_the_owner_signing_in_from_a_known_browser(system: System) -> None:
    """OWASP device cookies through the gateway: the cookie of a sign-in comes back to auth, and
    the owner's browser keeps its own budget while guesses from everywhere else are 429."""
    browser = Client(system.gateway_url)
    account = sign_up(browser)
    assert browser.cookies.get("taskflow_device", path=AUTH)
    for _ in range(3):
        flooder = Client(system.gateway_url)
        statuses = [
            flooder.post(f"{AUTH}/login", json={"email": account.email, "password": f"guess {i}"}).status_code
            for i in range(4)
        ]
        assert set(statuses) <= {401, 429}
    stranger = Client(system.gateway_url).post(f"{AUTH}/login", json={"email": account.email, "password": PASSWORD})
    assert stranger.status_code == 429
    assert browser.post(f"{AUTH}/login", json={"email": account.email, "password": PASSWORD}).status_code == 200


def test_auth_events_reach_the_exchange_and_match_the_catalog(gateway: Client, events: EventProbe) -> None:
    account = sign_up(gateway, name="Eventful")
    sign_in(gateway, account.email, PASSWORD)
    gateway.patch(f"{AUTH}/me", json={"name": "Renamed"}, headers=account.headers)
    gateway.post(f"{AUTH}/password", json={"current_password": PASSWORD, "new_password": "a brand new one"}, headers=account.headers)
    found = events.wait_for(lambda event: event["subject"] == account.id, count=5)
    assert [event["type"] for event in found] == [
        "user.registered", "user.email_verification_requested", "user.logged_in", "user.updated", "user.password_changed"
    ]
    assert found[3]["data"]["changed"] == ["name"] and found[3]["data"]["name"] == "Renamed"
    assert all(event["data"]["actor_id"] == account.id for event in found)
    assert all("password" not in json.dumps(event["data"]).replace("password_changed", "") for event in found)
