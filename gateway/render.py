"""Render the local nginx gateway from ``gateway/kong.yml`` so the two never drift.

Kong (DB-less, declarative 3.x format) is the production gateway. On a machine without Docker the
same file is turned into an nginx configuration with the same routes, per-route plugin precedence,
limits and headers. Plugins with no nginx counterpart (``prometheus``, ``opentelemetry``) are
listed in a comment of the output; any other unknown plugin is an error, so a plugin added to
kong.yml is never silently dropped locally.

Kong upstreams become nginx upstreams of the local instances (``REPLICAS`` of each service, see
:func:`instances`) with the same balancing and passive health check. JSON, HTML, JavaScript and CSS
of 1 KiB and more are compressed (gzip, and brotli where Debian's module is installed); with
``--tls-certificate`` and ``--tls-key`` the gateway also serves HTTPS with HTTP/2 on
``GATEWAY_TLS_PORT``.

Usage: ``python gateway/render.py --out var/gateway/nginx.conf`` (environment: ``GATEWAY_PORT``,
``GATEWAY_TLS_PORT``, ``<SERVICE>_PORT`` per Kong service name, ``REPLICAS``,
``<SERVICE>_REPLICAS``, ``REPLICA_PORT_STEP``, ``GATEWAY_UPSTREAM_HOST``, ``GATEWAY_DRAINING``). ``--without-rate-limits``
leaves the rate-limiting plugins out, for ``make bench`` only: its load comes from one address
and would measure nothing but 429s; ``make run`` and the tests never pass it.
"""

from __future__ import annotations

import argparse
import math
import os
import pwd
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import yaml

HERE = Path(__file__).resolve().parent
NGINX_ONLY_IN_PRODUCTION = frozenset({"prometheus", "opentelemetry"})
RENDERED_PLUGINS = frozenset({"correlation-id", "cors", "rate-limiting", "request-size-limiting", "response-transformer"})
SIZE_UNITS = {"megabytes": "m", "kilobytes": "k", "bytes": ""}
PERIOD_SECONDS = {"second": 1, "minute": 60}
# What the gateway's own 405 lists in Allow when kong.yml's cors plugin names no methods.
DEFAULT_METHODS = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"]
# Statuses nginx itself may answer, each rendered as a problem details page.
PROBLEM_STATUSES = (400, 404, 405, 413, 414, 429, 502, 503, 504)
# Kong's balancing algorithms and nginx's directive for each (round-robin is nginx's default).
BALANCING = {"round-robin": None, "least-connections": "least_conn"}
# What gzip and brotli compress besides text/html, which both always do (listing it is an error).
COMPRESSED_TYPES = "application/json application/problem+json application/javascript text/javascript text/css"
# Debian's libnginx-mod-http-brotli-filter; without it the gateway compresses with gzip alone.
BROTLI_MODULE = Path("/usr/lib/nginx/modules/ngx_http_brotli_filter_module.so")


class KongConfigError(ValueError):
    """kong.yml uses something this renderer cannot reproduce in nginx."""


@dataclass
class RateLimit:
    """One nginx ``limit_req_zone``: ``limit`` requests per ``period`` ("second"|"minute") per IP."""

    zone: str
    limit: int
    period: str

    @property
    def rate(self) -> str:
        return f"{self.limit}r/{'s' if self.period == 'second' else 'm'}"

    @property
    def retry_after(self) -> int:
        """Seconds until the leaky bucket admits one more request (RFC 9110 §10.2.3 Retry-After)."""
        return max(1, math.ceil(PERIOD_SECONDS[self.period] / self.limit))


@dataclass
class Upstream:
    """One nginx ``upstream``: the instances ``servers`` ("host:port"), ``balance`` (an nginx
    directive or None for round-robin) and the passive check: ``max_fails`` failed connections or
    timeouts take a server out for ``fail_timeout_s`` seconds."""

    servers: list[str]
    balance: str | None = None
    max_fails: int = 1
    fail_timeout_s: int = 10
    draining: list[str] = field(default_factory=list)
    """Servers marked ``down``: being restarted, so they get no new request (see :func:`draining`)."""


@dataclass
class Location:
    """One Kong route path rendered as an nginx ``location`` with its effective plugins."""

    route: str
    upstream: str
    matcher: str
    priority: int
    rate_limits: list[RateLimit] = field(default_factory=list)
    connect_timeout_ms: int = 60000
    read_timeout_ms: int = 60000
    write_timeout_ms: int = 60000
    tries: int = 1
    headers: list[tuple[str, str]] = field(default_factory=list)
    buffered: bool = True

    @property
    def retry_after(self) -> int:
        return max((limit.retry_after for limit in self.rate_limits), default=1)


def _plugins_by_name(plugins: list[dict] | None, scope: str) -> dict[str, tuple[str, dict]]:
    """``{plugin name: (scope, config)}``; the scope ("global", a service or route name) keys counters."""
    return {
        plugin["name"]: (scope, plugin.get("config", {}))
        for plugin in plugins or []
        if plugin.get("enabled", True)
    }


def _matcher(path: str) -> str:
    """Kong 3 route path → nginx location matcher (regex paths start with ``~``, anchored at start)."""
    if path.startswith("~"):
        return f"~ ^{path[1:]}"
    if re.search(r"\s", path):
        raise KongConfigError(f"path with whitespace: {path!r}")
    return f"^~ {path}"


def _rate_limits(scope: str, config: dict) -> list[RateLimit]:
    """nginx zones for one rate-limiting plugin; a plugin's counters are shared by all routes it covers."""
    # policy redis shares counters between Kong nodes; the one local nginx is the only node, so its
    # own counters are the same limit.
    if config.get("limit_by", "consumer") != "ip" or config.get("policy", "local") not in ("local", "redis"):
        raise KongConfigError(f"{scope}: only rate-limiting with limit_by=ip, policy=local or redis renders")
    unsupported = {"hour", "day", "month", "year"} & {k for k, v in config.items() if v}
    if unsupported:
        raise KongConfigError(f"{scope}: nginx limit_req has no {sorted(unsupported)} windows")
    return [
        RateLimit(zone=f"{scope.replace('-', '_')}_per_{period}", limit=int(config[period]), period=period)
        for period in PERIOD_SECONDS
        if config.get(period)
    ]


def _added_headers(scope: str, config: dict) -> list[tuple[str, str]]:
    """``(name, value)`` of a response-transformer plugin that only adds response headers (Kong's
    ``add.headers``, each ``"Name:value"``); any other transformation has no rendering here."""
    add = config.get("add", {})
    if set(config) - {"add"} or set(add) - {"headers"}:
        raise KongConfigError(f"{scope}: only response-transformer's add.headers renders")
    headers = []
    for header in add.get("headers", []):
        name, separator, value = header.partition(":")
        if not separator or not re.fullmatch(r"[A-Za-z0-9-]+", name) or '"' in value:
            raise KongConfigError(f"{scope}: response-transformer header {header!r} is not 'Name:value'")
        headers.append((name, value))
    return headers


def instances(name: str, port: int, env: dict[str, str]) -> list[int]:
    """The local ports of service ``name``'s instances: ``<NAME>_REPLICAS`` (else ``REPLICAS``,
    else 1) of them, the first on ``port``, each next one ``REPLICA_PORT_STEP`` (10) further, as
    scripts/service numbers them."""
    count = int(env.get(f"{name.upper()}_REPLICAS", env.get("REPLICAS", "1")))
    step = int(env.get("REPLICA_PORT_STEP", "10"))
    if count < 1:
        raise KongConfigError(f"{name}: at least one instance, not {count}")
    return [port + step * index for index in range(count)]


def draining(name: str, ports: list[int], env: dict[str, str]) -> list[int]:
    """The ports of service ``name``'s instances that ``GATEWAY_DRAINING`` takes out of the
    gateway while scripts/reload restarts them ("<service>:<instance>" items, 1-based, separated
    by spaces or commas). The last instance in service is never taken out: with one instance
    a restart is an outage anyway, and nginx would answer every request 502 meanwhile.

    Raises:
        KongConfigError: an item names no instance of ``name``.
    """
    wanted = []
    for item in env.get("GATEWAY_DRAINING", "").replace(",", " ").split():
        service, _, instance = item.partition(":")
        if service != name:
            continue
        if not instance.isdigit() or not 1 <= int(instance) <= len(ports):
            raise KongConfigError(f"GATEWAY_DRAINING: {item!r} names no instance of {name}")
        wanted.append(ports[int(instance) - 1])
    return wanted if len(wanted) < len(ports) else []


def _upstream(name: str, ports: list[int], host: str, kong_upstream: dict | None) -> Upstream:
    """The nginx upstream of one service; ``kong_upstream``, kong.yml's upstream of that name (or None),
    gives its algorithm and its passive check (tcp_failures; the time until an active check
    would look again, ``active.unhealthy.interval``)."""
    servers = [f"{host}:{port}" for port in ports]
    if kong_upstream is None:
        return Upstream(servers=servers)
    algorithm = kong_upstream.get("algorithm", "round-robin")
    if algorithm not in BALANCING:
        raise KongConfigError(f"upstream {name}: no nginx balancing for algorithm {algorithm!r}")
    checks = kong_upstream.get("healthchecks", {})
    passive = checks.get("passive", {}).get("unhealthy", {})
    return Upstream(
        servers=servers,
        balance=BALANCING[algorithm],
        max_fails=int(passive.get("tcp_failures", 1)),
        fail_timeout_s=int(checks.get("active", {}).get("unhealthy", {}).get("interval", 10)),
    )


def build_model(kong: dict, env: dict[str, str], *, rate_limiting: bool = True) -> dict:
    """Turn a parsed kong.yml into the template's model.

    Args:
        kong: the declarative configuration (``_format_version`` "3.0").
        env: environment; ``<SERVICE>_PORT`` overrides the port of each service's ``url`` (its
            first instance; :func:`instances` gives the others), ``GATEWAY_UPSTREAM_HOST`` the
            host (default 127.0.0.1), ``GATEWAY_PORT`` and ``GATEWAY_TLS_PORT`` the listen ports.
        rate_limiting: False renders no ``rate-limiting`` plugin (benchmarks only).

    Returns:
        ``{"listen_port", "tls_port", "upstreams" ({name: Upstream}), "locations", "zones",
        "max_body", "correlation", "cors", "allowed_methods", "skipped", "rate_limiting"}``;
        ``allowed_methods`` are the methods the gateway passes on (the cors plugin's), listed in
        ``Allow`` when nginx itself answers 405.

    Raises:
        KongConfigError: a plugin or option that has no faithful nginx rendering.
    """
    if str(kong.get("_format_version")) != "3.0":
        raise KongConfigError("expected _format_version 3.0")
    global_plugins = _plugins_by_name(kong.get("plugins"), "global")
    every_plugin = set(global_plugins)
    kong_upstreams = {upstream["name"]: upstream for upstream in kong.get("upstreams", [])}
    upstreams: dict[str, Upstream] = {}
    locations: list[Location] = []
    for service in kong.get("services", []):
        url = urlsplit(service["url"])
        port = int(env.get(f"{service['name'].upper()}_PORT", str(url.port or 80)))
        ports = instances(service["name"], port, env)
        host = env.get("GATEWAY_UPSTREAM_HOST", "127.0.0.1")
        upstreams[service["name"]] = _upstream(service["name"], ports, host, kong_upstreams.get(url.hostname or ""))
        upstreams[service["name"]].draining = [f"{host}:{port}" for port in draining(service["name"], ports, env)]
        service_plugins = {**global_plugins, **_plugins_by_name(service.get("plugins"), service["name"])}
        every_plugin |= set(service_plugins)
        for route in service.get("routes", []):
            if route.get("strip_path", True):
                raise KongConfigError(f"{route['name']}: routes pass paths through (strip_path: false)")
            # Kong runs one instance of a plugin per request: the most specific one (route > service > global).
            plugins = {**service_plugins, **_plugins_by_name(route.get("plugins"), route["name"])}
            every_plugin |= set(plugins)
            limits = _rate_limits(*plugins["rate-limiting"]) if "rate-limiting" in plugins and rate_limiting else []
            headers = _added_headers(*plugins["response-transformer"]) if "response-transformer" in plugins else []
            for path in route["paths"]:
                locations.append(
                    Location(
                        route=route["name"],
                        upstream=service["name"],
                        matcher=_matcher(path),
                        priority=route.get("regex_priority", 0),
                        rate_limits=limits,
                        connect_timeout_ms=service.get("connect_timeout", 60000),
                        read_timeout_ms=service.get("read_timeout", 60000),
                        write_timeout_ms=service.get("write_timeout", 60000),
                        tries=service.get("retries", 5) + 1,
                        headers=headers,
                        # Kong's route attribute; off, each byte goes to the client as it comes (streams).
                        buffered=route.get("response_buffering", True),
                    )
                )
    unknown = every_plugin - RENDERED_PLUGINS - NGINX_ONLY_IN_PRODUCTION
    if unknown:
        raise KongConfigError(f"plugins with no nginx rendering: {sorted(unknown)}")
    # nginx tries regex locations in file order; Kong evaluates higher regex_priority first.
    locations.sort(key=lambda location: -location.priority)
    zones = {limit.zone: limit for location in locations for limit in location.rate_limits}
    size = global_plugins.get("request-size-limiting", ("global", {"allowed_payload_size": 128}))[1]
    return {
        "listen_port": int(env.get("GATEWAY_PORT", "8000")),
        "tls_port": int(env.get("GATEWAY_TLS_PORT", "8443")),
        "upstreams": upstreams,
        "locations": locations,
        "zones": list(zones.values()),
        "max_body": f"{size['allowed_payload_size']}{SIZE_UNITS[size.get('size_unit', 'megabytes')]}",
        "correlation": global_plugins.get("correlation-id", (None, None))[1],
        "cors": global_plugins.get("cors", (None, None))[1],
        "allowed_methods": global_plugins.get("cors", (None, {}))[1].get("methods", DEFAULT_METHODS),
        "skipped": sorted(every_plugin & NGINX_ONLY_IN_PRODUCTION),
        "rate_limiting": rate_limiting,
    }


def worker_user() -> str | None:
    """The user nginx's workers run as: when started by root, root itself, like every other process
    of ``make run``; otherwise None (nginx keeps the caller's user and ignores ``user``). nginx's
    default for root, ``nobody``, cannot write request bodies into a private state directory."""
    return pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None


def render(
    kong_path: Path,
    state_dir: Path,
    env: dict[str, str],
    *,
    rate_limiting: bool = True,
    tls: tuple[Path, Path] | None = None,
) -> str:
    """Render kong.yml at ``kong_path`` into nginx.conf text; nginx's pid and temp files go in
    ``state_dir``; ``tls``, (certificate, key) PEM files, adds the HTTPS listener with HTTP/2."""
    kong = yaml.safe_load(kong_path.read_text())
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    ).get_template("nginx.conf.j2")
    return template.render(
        **build_model(kong, env, rate_limiting=rate_limiting),
        state_dir=state_dir,
        source=kong_path.name,
        problem_statuses=PROBLEM_STATUSES,
        worker_user=worker_user(),
        tls=tls,
        compressed_types=COMPRESSED_TYPES,
        brotli_module=BROTLI_MODULE if BROTLI_MODULE.exists() else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kong", type=Path, default=HERE / "kong.yml")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--without-rate-limits", action="store_true", help="benchmarks only: no rate-limiting")
    parser.add_argument("--tls-certificate", type=Path, help="PEM certificate chain of the HTTPS listener")
    parser.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    args = parser.parse_args(argv)
    if (args.tls_certificate is None) != (args.tls_key is None):
        parser.error("--tls-certificate and --tls-key go together")
    tls = (args.tls_certificate.resolve(), args.tls_key.resolve()) if args.tls_certificate else None
    state_dir = args.out.resolve().parent
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state_dir / "temp" / temp).mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        render(args.kong, state_dir, dict(os.environ), rate_limiting=not args.without_rate_limits, tls=tls)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
