"""Session-wide real infrastructure for every test in the repository (root conftest loads this).

``infra``: FerretDB + RabbitMQ. ``vhost``: a fresh vhost on its broker. ``system``: the services and gateway on top of them.
``gateway``: a client of the gateway from its own loopback address.
``events``: the events the system publishes during the test.
``otlp``: the spans the system exports (a real OTLP/HTTP receiver).
``spans``: spans finished in this test process (an SDK tracer provider is installed once).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .events import EventProbe
from .infra import Infra
from .otlp import OtlpReceiver
from .system import Client, System


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    running = Infra(tmp_path_factory.mktemp("infra")).start()
    yield running
    running.stop()


@pytest.fixture
def vhost(infra: Infra) -> Iterator[str]:
    """The AMQP URL of a new, empty vhost on the session's broker (guest may do everything), deleted after."""
    url = infra.fresh_vhost()
    yield url
    infra.rabbitmqctl("delete_vhost", unquote(urlsplit(url).path[1:]))


ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin passphrase for the e2e suite"


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver the whole system exports its traces to."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def system(infra: Infra, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    running = System(
        tmp_path_factory.mktemp("system"),
        infra,
        BCRYPT_ROUNDS="4",
        ADMIN_EMAIL=ADMIN_EMAIL,
        ADMIN_PASSWORD=ADMIN_PASSWORD,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="200",
        REMINDER_SCAN_SECONDS="1",
    ).start()
    yield running
    running.stop()


@pytest.fixture
def events(system: System) -> Iterator[EventProbe]:
    """Events the system publishes from now on, each validated against the catalog."""
    probe = EventProbe(system.infra.rabbitmq_url)
    yield probe
    probe.close()


@pytest.fixture
def gateway(system: System) -> Iterator[Client]:
    with Client(system.gateway_url) as client:
        yield client


_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans this process finishes during the test; the global tracer provider is set once."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()
