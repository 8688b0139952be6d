"""Sign-in throttling with device cookies (DESIGN §4 auth, "Sign-in throttling"): budgets per
account for unknown devices, per client address, per known device, reserved before the check."""

from __future__ import annotations

import secrets
import threading
import uuid

from flask import Flask
from flask.testing import FlaskClient
from taskflow_auth.throttling import DEVICE_COOKIE

from .conftest import PASSWORD, bearer

AUTH = "/api/v1/auth"


def _email() -> str:
    return f"owner-{uuid.uuid4().hex[:8]}@example.com"


def _register(client: FlaskClient, email: str) -> dict:
    response = client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "Owner"})
    assert response.status_code == 201, response.json
    return response.json


def _login(client: FlaskClient, email: str, password: str, address: str = "127.0.0.1") -> int:
    response = client.post(f"{AUTH}/login", json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": address})
    return response.status_code


def test_sign_in_sets_an_httponly_strict_device_cookie_for_the_auth_routes_only(app: Flask) -> None:
    client = app.test_client()
    email = _email()
    registered = client.post(f"{AUTH}/register", json={"email": email, "password": PASSWORD, "name": "Owner"})
    cookie = registered.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith(f"{DEVICE_COOKIE}=")
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "Path=/api/v1/auth" in cookie and "SameSite=Strict" in cookie
    token = client.get_cookie(DEVICE_COOKIE, path=AUTH).value
    signed_in = client.post(f"{AUTH}/login", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200
    assert client.get_cookie(DEVICE_COOKIE, path=AUTH).value == token  # the device keeps its name


def test_wrong_passwords_from_unknown_devices_make_the_account_429_there_even_with_the_right_one(make_app) -> None:
    app = make_app(login_max_failures_per_account=3)
    email = _email()
    _register(app.test_client(), email)
    statuses = [_login(app.test_client(), email, f"guess {i} wrong", f"10.0.0.{i}") for i in range(3)]
    assert statuses == [401, 401, 401]
    throttled = app.test_client().post(f"{AUTH}/login", json={"email": email, "password": PASSWORD})
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert throttled.mimetype == "application/problem+json"


def test_the_owner_signs_in_from_a_known_device_while_unknown_devices_are_throttled(make_app) -> None:
    """20 wrong passwords from anywhere, the owner's address included, do not stop the owner's
    browser that signed in before; the same password from an unknown device stays throttled."""
    app = make_app(login_max_failures_per_account=5, login_max_failures_per_client=5)
    email = _email()
    owner = app.test_client()
    _register(owner, email)
    attacker = [_login(app.test_client(), email, f"guess {i} wrong", f"10.0.{i % 2}.9") for i in range(20)]
    assert attacker.count(401) == 5 and attacker.count(429) == 15
    for address in ("127.0.0.1", "10.0.0.9"):  # its own address, and one the attacker exhausted
        assert _login(owner, email, PASSWORD, address) == 200
    assert _login(app.test_client(), email, PASSWORD, "192.0.2.1") == 429


def test_a_known_device_has_a_budget_of_its_own_that_a_sign_in_from_it_clears(make_app) -> None:
    app = make_app(login_max_failures_per_device=3)
    email = _email()
    owner = app.test_client()
    _register(owner, email)
    assert [_login(owner, email, "not my password") for _ in range(2)] == [401, 401]
    assert _login(owner, email, PASSWORD) == 200
    assert [_login(owner, email, "not my password") for _ in range(4)] == [401, 401, 401, 429]
    assert _login(owner, email, PASSWORD) == 429
    assert _login(app.test_client(), email, PASSWORD) == 200  # unknown devices spent nothing


def test_a_device_cookie_unknown_to_the_account_spends_the_unknown_devices_budget(make_app) -> None:
    app = make_app(login_max_failures_per_account=2)
    email = _email()
    _register(app.test_client(), email)
    forger = app.test_client()
    forger.set_cookie(DEVICE_COOKIE, secrets.token_urlsafe(32), path=AUTH)
    other_account = app.test_client()
    _register(other_account, _email())  # a device known to another account only
    assert [_login(forger, email, "guess"), _login(other_account, email, "guess")] == [401, 401]
    assert _login(app.test_client(), email, PASSWORD) == 429


def test_repeated_failures_from_one_client_address_are_429_for_every_account_from_unknown_devices(make_app) -> None:
    app = make_app(login_max_failures_per_client=4)
    email = _email()
    _register(app.test_client(), email)
    for i in range(4):
        assert _login(app.test_client(), f"someone{i}@example.com", "wrong password") == 401
    assert _login(app.test_client(), email, PASSWORD) == 429
    assert _login(app.test_client(), email, PASSWORD, "10.1.2.3") == 200


def test_parallel_wrong_passwords_check_at_most_the_budget(make_app) -> None:
    """The budget is reserved before the password check: 20 attempts at once, budget 5, exactly
    5 passwords are checked (401) and the others answer 429 without a check."""
    app = make_app(login_max_failures_per_account=5, login_max_failures_per_client=100)
    email = _email()
    _register(app.test_client(), email)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def guess(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(_login(client, email, f"parallel guess {index}"))

    threads = [threading.Thread(target=guess, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [401] * 5 + [429] * 15


def test_budgets_reserved_from_eight_threads_at_once_never_exceed_the_limit(app: Flask) -> None:
    """Eight processes reserving one key at once, its window not yet open: one opens it and
    exactly ``limit`` reservations succeed."""
    failures = app.extensions["taskflow_auth.accounts"].throttle.failures
    barrier = threading.Barrier(8)
    granted: list[bool] = []

    def reserve() -> None:
        barrier.wait()
        for _ in range(10):
            granted.append(failures.reserve("account:raced@example.com", 50) is None)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert granted.count(True) == 50 and granted.count(False) == 30


def test_wrong_current_passwords_spend_the_sign_in_budget(make_app) -> None:
    """A stolen access token does not buy unlimited guesses of the password: a wrong current
    password costs what a failed login from the same device costs."""
    app = make_app(login_max_failures_per_account=3)
    email = _email()
    headers = bearer(_register(app.test_client(), email)["access_token"])
    thief = app.test_client()
    change = {"current_password": "a wrong guess", "new_password": "a new passphrase"}
    statuses = [thief.post(f"{AUTH}/password", json=change, headers=headers).status_code for _ in range(4)]
    assert statuses == [403, 403, 403, 429]
    assert _login(app.test_client(), email, PASSWORD) == 429


def test_a_device_token_the_client_chose_is_never_adopted(make_app) -> None:
    """A token planted in the owner's browser does not become a known device of the account."""
    app = make_app(login_max_failures_per_account=2)
    email = _email()
    _register(app.test_client(), email)
    planted = "A" * 43
    owner = app.test_client()
    owner.set_cookie(DEVICE_COOKIE, planted, path=AUTH)
    assert _login(owner, email, PASSWORD) == 200
    assert owner.get_cookie(DEVICE_COOKIE, path=AUTH).value != planted
    attacker = app.test_client()
    attacker.set_cookie(DEVICE_COOKIE, planted, path=AUTH)
    assert [_login(attacker, email, "guess") for _ in range(3)] == [401, 401, 429]


def test_a_known_device_cookie_counts_even_behind_a_planted_one(make_app) -> None:
    app = make_app(login_max_failures_per_account=1)
    email = _email()
    owner = app.test_client()
    _register(owner, email)
    real = owner.get_cookie(DEVICE_COOKIE, path=AUTH).value
    assert _login(app.test_client(), email, "guess") == 401  # the unknown devices' budget is spent
    planted = f"{DEVICE_COOKIE}={'B' * 43}; {DEVICE_COOKIE}={real}"  # a longer-path cookie comes first
    response = app.test_client(use_cookies=False).post(
        f"{AUTH}/login", json={"email": email, "password": PASSWORD}, headers={"Cookie": planted}
    )
    assert response.status_code == 200


def test_a_password_change_forgets_the_devices_that_signed_in_with_the_old_password(make_app) -> None:
    """Devices farmed with a leaked password buy no guesses at the new one; the device that
    changed the password stays known."""
    app = make_app(login_max_failures_per_account=2)
    email = _email()
    owner = app.test_client()
    headers = bearer(_register(owner, email)["access_token"])
    farmed = [app.test_client() for _ in range(3)]
    assert [_login(device, email, PASSWORD) for device in farmed] == [200, 200, 200]
    change = {"current_password": PASSWORD, "new_password": "a new passphrase"}
    assert owner.post(f"{AUTH}/password", json=change, headers=headers).status_code == 204
    guesses = [_login(device, email, "guess at the new one") for device in farmed]
    assert guesses == [401, 401, 429]  # the unknown devices' budget, shared
    assert _login(owner, email, "a new passphrase") == 200


def test_logout_all_forgets_every_device(make_app) -> None:
    app = make_app(login_max_failures_per_account=1)
    email = _email()
    owner = app.test_client()
    headers = bearer(_register(owner, email)["access_token"])
    assert owner.post(f"{AUTH}/logout-all", headers=headers).status_code == 204
    assert [_login(owner, email, "guess"), _login(owner, email, PASSWORD)] == [401, 429]
