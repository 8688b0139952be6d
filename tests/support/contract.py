"""Contract tests with schemathesis (issue 10): the seed, the client and the tokens they use.

Seed: ``TASKFLOW_CONTRACT_SEED`` replays a run; without it each session draws one, printed in
the report header, so a failure seen once can be replayed exactly.

Client: each request leaves from the next of 254 loopback addresses of a /24 of its own. The
gateway limits every client address (100 requests/s, 30/min on login, register, password and refresh) and auth
counts failed logins per address (20 per 15 minutes); a fuzzing run sends hundreds of logins and
registrations, so from one address almost every one would be a 429 and the service behind it
untested. Spread over the /24 each address stays far below every limit, while 429 stays
documented (and gateway limits keep their own tests in tests/e2e/test_gateway.py).

Tokens: an operation's OpenAPI security requirement says what it needs; ``bearerAuth:
["admin"]`` gets the e2e admin's token, ``bearerAuth: []`` a fresh user's, no requirement none.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from .accounts import sign_in, sign_up
from .fixtures import ADMIN_EMAIL, ADMIN_PASSWORD
from .system import Client, SourceAddressAdapter, System

SEED_VARIABLE = "TASKFLOW_CONTRACT_SEED"
TOKEN_LIFETIME_SECONDS = 600  # re-sign in well before the 15-minute access tokens expire


def pytest_configure(config: pytest.Config) -> None:
    given = os.environ.get(SEED_VARIABLE)
    config._taskflow_contract_seed = int(given) if given else random.randrange(2**32)  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str:
    seed = config._taskflow_contract_seed  # type: ignore[attr-defined]
    return f"contract tests: seed {seed} (replay with {SEED_VARIABLE}={seed})"


@pytest.fixture(scope="session")
def contract_seed(pytestconfig: pytest.Config) -> int:
    """The seed every contract test derives its generated data from."""
    return pytestconfig._taskflow_contract_seed  # type: ignore[attr-defined]


class RotatingSourceAddresses(HTTPAdapter):
    """Sends each request from the next address of ``addresses`` (each with its own connection pool)."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__()
        self._adapters = [SourceAddressAdapter(address) for address in addresses]
        self._next = itertools.cycle(self._adapters)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return next(self._next).send(request, **kwargs)

    def close(self) -> None:
        for adapter in self._adapters:
            adapter.close()
        super().close()


@pytest.fixture(scope="session")
def contract_http() -> Iterator[requests.Session]:
    """The HTTP session of the contract tests, one loopback /24 of source addresses."""
    network = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    session = requests.Session()
    session.mount("http://", RotatingSourceAddresses([f"{network}.{host}" for host in range(1, 255)]))
    yield session
    session.close()


class Tokens:
    """Access tokens for generated requests: a fresh user's and the e2e admin's, renewed in time."""

    def __init__(self, gateway_url: str) -> None:
        self.gateway_url = gateway_url
        self._tokens: dict[str, tuple[str, float]] = {}

    def for_security(self, requirements: list[dict[str, list[str]]] | None) -> str | None:
        """The token an operation with these OpenAPI security ``requirements`` needs, or None."""
        if not requirements:
            return None
        role = "admin" if "admin" in requirements[0].get("bearerAuth", []) else "user"
        token, obtained = self._tokens.get(role, ("", 0.0))
        if time.monotonic() - obtained > TOKEN_LIFETIME_SECONDS:
            token = self._sign_in(role)
            self._tokens[role] = (token, time.monotonic())
        return token

    def _sign_in(self, role: str) -> str:
        with Client(self.gateway_url) as client:
            account = sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD) if role == "admin" else sign_up(client, name="Contract")
        return account.access_token


@pytest.fixture(scope="session")
def contract_tokens(system: System) -> Tokens:
    return Tokens(system.gateway_url)
