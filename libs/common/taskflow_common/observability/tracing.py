"""OpenTelemetry tracing: one provider per process, exported over OTLP/HTTP when configured.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, spans go in batches to ``<endpoint>/v1/traces`` (Jaeger
ingests OTLP natively; the Jaeger exporter package is abandoned and fails to import with current
SDKs). Without it there is no exporter and nothing is recorded (sampler ALWAYS_OFF), but trace
ids are still generated and propagated, so logs, events and the audit log keep their trace ids.

Instrumented: Flask (server spans), requests (client spans, W3C context injected), pymongo
(database spans). Messaging is traced by :mod:`taskflow_common.events` itself: the official pika
instrumentation wraps channel callbacks and would take the relay's context, while an event must
carry the context of the request that caused it.
"""

from __future__ import annotations

import os
from importlib import metadata

from flask import Flask
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

EXCLUDED_URLS = "healthz,readyz"


def resource(service: str, *, environment: str) -> Resource:
    """``service.name`` (``OTEL_SERVICE_NAME`` or ``taskflow-<service>``), ``service.version``,
    ``deployment.environment.name`` and ``process.pid``; ``OTEL_RESOURCE_ATTRIBUTES`` adds more."""
    return Resource.create({
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or f"taskflow-{service}",
        "service.version": metadata.version("taskflow-common"),
        "deployment.environment.name": environment,
        "process.pid": os.getpid(),
    })


def configure_tracing(service: str, *, environment: str) -> TracerProvider:
    """Install this process's tracer provider and the global instrumentations; returns the provider."""
    exporting = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    provider = TracerProvider(
        resource=resource(service, environment=environment),
        sampler=ParentBased(ALWAYS_ON) if exporting else ALWAYS_OFF,
    )
    if exporting:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if not RequestsInstrumentor().is_instrumented_by_opentelemetry:
        RequestsInstrumentor().instrument()
    if not PymongoInstrumentor().is_instrumented_by_opentelemetry:
        PymongoInstrumentor().instrument()
    return provider


def instrument_app(app: Flask) -> None:
    """Server spans for every request of ``app`` (probes excluded), named by route."""
    FlaskInstrumentor.instrument_app(app, excluded_urls=EXCLUDED_URLS)
