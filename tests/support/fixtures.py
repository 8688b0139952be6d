"""Session-wide real infrastructure for every test in the repository (root conftest loads this).

``infra``: FerretDB + RabbitMQ. ``system``: the services and gateway on top of them.
``gateway``: a client of the gateway from its own loopback address.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .infra import Infra
from .system import Client, System


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    running = Infra(tmp_path_factory.mktemp("infra")).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def system(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    running = System(tmp_path_factory.mktemp("system"), infra).start()
    yield running
    running.stop()


@pytest.fixture
def gateway(system: System) -> Iterator[Client]:
    with Client(system.gateway_url) as client:
        yield client
