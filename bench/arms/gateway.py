"""B1, the gateway hop: one cheap authenticated GET (``GET /api/v1/tasks/{id}``) straight to the
tasks service and through the nginx gateway rendered from kong.yml, plus nginx answering
``return 200`` by itself, the machine's ceiling for wrk and nginx.

Peak rate: wrk with 8 connections for ``seconds``, the two arms interleaved twice, medians
compared. Added latency: p50 with one connection (no queueing), gateway minus direct.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import jinja2
import requests

from .. import wrk
from ..context import Bench, User
from ..figures import Target, ratio, spread
from ..stack import Child, free_port, wait_for
from . import entry

CONNECTIONS = 8


def _return_200_nginx(bench: Bench) -> tuple[Child, str]:
    state = bench.base / "nginx-return"
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state / temp).mkdir(parents=True, exist_ok=True)
    port = free_port()
    template = jinja2.Template(Path(__file__).parents[1].joinpath("nginx_return.conf.j2").read_text())
    (state / "nginx.conf").write_text(template.render(state=state, port=port))
    child = Child(["nginx", "-p", str(state), "-c", str(state / "nginx.conf"), "-g", "daemon off;"],
                  env={"PATH": "/usr/sbin:/usr/bin:/bin"}, log_path=state / "nginx.log")
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(answers, timeout=30, what="nginx return 200")
    return child, url


def run(bench: Bench, user: User, task_id: str) -> dict[str, Any]:
    path = f"/api/v1/tasks/{task_id}"
    direct, gateway = bench.url("tasks", path), bench.system.gateway_url + path
    seconds = bench.seconds
    for url in (direct, gateway):
        wrk.run(url, seconds=2, connections=CONNECTIONS, headers=user.headers)  # warm-up
    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    p50s: dict[str, list[float]] = {"direct": [], "gateway": []}
    for _ in range(2):
        for name, url in (("direct", direct), ("gateway", gateway)):
            rates[name].append(wrk.run(url, seconds=seconds, connections=CONNECTIONS, headers=user.headers).rate)
        for name, url in (("direct", direct), ("gateway", gateway)):
            p50s[name].append(wrk.run(url, seconds=seconds / 2, connections=1, headers=user.headers).p50_ms)
    nginx, ceiling_url = _return_200_nginx(bench)
    try:
        ceiling = wrk.run(ceiling_url, seconds=seconds, connections=CONNECTIONS)
    finally:
        nginx.stop()
    direct_rate, gateway_rate = statistics.median(rates["direct"]), statistics.median(rates["gateway"])
    added_ms = round(statistics.median(p50s["gateway"]) - statistics.median(p50s["direct"]), 3)
    hop = ratio(gateway_rate, direct_rate)
    bench.log(f"B1 direct {direct_rate:.0f}/s, gateway {gateway_rate:.0f}/s, added p50 {added_ms} ms")
    return entry(
        "B1", "gateway hop",
        method="wrk, one kept-alive authenticated GET /api/v1/tasks/{id} (8 connections, 1 thread) to tasks "
               "directly and through the gateway, interleaved twice, medians compared; added latency from p50 "
               "with 1 connection; ceiling: nginx `return 200` alone",
        tool="wrk", concurrency=f"{CONNECTIONS} connections (rate), 1 (latency)",
        duration=f"2 × {seconds:g} s per arm (rate), 2 × {seconds / 2:g} s (latency)",
        data="1 task of the caller", handler="sqlite",
        measurements={
            "direct_rate_per_s": [round(rate, 1) for rate in rates["direct"]],
            "gateway_rate_per_s": [round(rate, 1) for rate in rates["gateway"]],
            "direct_p50_ms": p50s["direct"], "gateway_p50_ms": p50s["gateway"],
            "nginx_return_200_rate_per_s": round(ceiling.rate, 1),
            "gateway_over_ceiling": ratio(gateway_rate, ceiling.rate),
            "spread": round(max(spread(rates["direct"]), spread(rates["gateway"])), 3),
        },
        checks=[(Target("req/s via gateway ÷ direct", 0.85), hop),
                (Target("added p50", 0.5, at_most=True, unit="ms"), added_ms)],
    )
