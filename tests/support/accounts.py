"""Accounts for end-to-end tests, made through the gateway like any client would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .system import Client

PASSWORD = "an e2e passphrase"


@dataclass
class Account:
    """A signed-in user: their profile, tokens and a ready ``Authorization`` header."""

    user: dict[str, Any]
    access_token: str
    refresh_token: str
    password: str

    @property
    def id(self) -> str:
        return self.user["id"]

    @property
    def email(self) -> str:
        return self.user["email"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def sign_up(gateway: Client, *, name: str = "E2E User", password: str = PASSWORD) -> Account:
    """Register a fresh account through the gateway."""
    email = f"e2e-{uuid.uuid4().hex[:12]}@example.com"
    response = gateway.post("/api/v1/auth/register", json={"email": email, "password": password, "name": name})
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["user"], body["access_token"], body["refresh_token"], password)


def sign_in(gateway: Client, email: str, password: str) -> Account:
    """Log in through the gateway."""
    response = gateway.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    return Account(body["user"], body["access_token"], body["refresh_token"], password)
