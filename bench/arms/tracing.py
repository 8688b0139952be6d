"""B6, tracing cost: ``GET /api/v1/tasks/{id}`` req/s of a tasks instance exporting every span to
a local OTLP receiver (bench/otlp_sink.py) ÷ the same with the OpenTelemetry SDK disabled
(``OTEL_SDK_DISABLED=true``). The default configuration (no endpoint: nothing recorded, trace ids
still propagated) is measured too.
"""

from __future__ import annotations

import statistics
from typing import Any

from .. import wrk
from ..context import Bench, User
from ..figures import Target, ratio, spread
from ..otlp_sink import OtlpSink
from ..stack import Service
from . import entry

CONNECTIONS = 8
PAIRS = 3
"""Measurements of exporting and of disabled, interleaved: the machine's other load shifts between them."""


def run(bench: Bench, user: User, task_id: str) -> dict[str, Any]:
    sink = OtlpSink()
    base = bench.base / "b6"
    settings = {
        "exporting": {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint},
        "disabled": {"OTEL_SDK_DISABLED": "true"},
        "default": {},
    }
    services = {name: Service(base, bench.system, "tasks", **environment) for name, environment in settings.items()}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    try:
        for service in services.values():
            wrk.run(f"{service.url}/api/v1/tasks/{task_id}", seconds=2, connections=CONNECTIONS, headers=user.headers)
        for name in ("exporting", "disabled", "default", *("exporting", "disabled") * (PAIRS - 1)):
            url = f"{services[name].url}/api/v1/tasks/{task_id}"
            rates[name].append(round(wrk.run(url, seconds=bench.seconds, connections=CONNECTIONS, headers=user.headers).rate, 1))
    finally:
        for service in services.values():
            service.stop()
        sink.close()
    exporting, disabled = statistics.median(rates["exporting"]), statistics.median(rates["disabled"])
    bench.log(f"B6 exporting {exporting:.0f}/s, disabled {disabled:.0f}/s, {sink.exports} exports received")
    return entry(
        "B6", "tracing cost",
        method="wrk against GET /api/v1/tasks/{id} on three tasks instances: spans exported over OTLP/HTTP to a "
               "local receiver that only counts them, OTEL_SDK_DISABLED=true, and the default (no endpoint); "
               f"exporting and disabled interleaved {PAIRS} times, medians compared",
        tool="wrk", concurrency=f"{CONNECTIONS} connections", duration=f"{PAIRS} × {bench.seconds:g} s per setting (default: 1 ×)",
        data="1 task of the caller", handler="sqlite",
        measurements={
            "rate_per_s": rates, "otlp_exports_received": sink.exports, "otlp_bytes_received": sink.bytes,
            "default_over_disabled": ratio(statistics.median(rates["default"]), disabled),
            "spread": round(max(spread(rates["exporting"]), spread(rates["disabled"])), 3),
        },
        checks=[(Target("req/s exporting ÷ SDK disabled", 0.9), ratio(exporting, disabled))],
    )
