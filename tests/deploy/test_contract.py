"""The deployment artifacts agree with the contract: every port of DESIGN §2, every environment
variable of §7 (and ours), and every public route of §4, as Compose, the Kubernetes manifests,
kong.yml and the Dockerfiles state them."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from . import compose, dockerfiles, kube
from .repo import METRICS_PORT, ROOT, SERVICES, WORKER_METRICS_PORT, design_ports, design_variables

# Variables the deployment sets beyond DESIGN §7; the README's configuration tables describe them.
OUR_VARIABLES = {
    "TASKFLOW_ENV",
    "MONGODB_DB_PREFIX",
    "MONGODB_ADDRESS",
    "MONGODB_PASSWORD",
    "RABBITMQ_PASSWORD",
    "HOST",
    *(f"{service.upper()}_PORT" for service in SERVICES),
    "WEB_CONCURRENCY",
    "METRICS_PORT",
    "WORKER_METRICS_PORT",
    "AUTH_URL",
    "TASKS_URL",
    "SENTRY_DSN",
}
COMMON_VARIABLES = {
    "TASKFLOW_ENV",
    "LOG_LEVEL",
    "MONGODB_URI",
    "MONGODB_DB_PREFIX",
    "RABBITMQ_URL",
    "JWKS_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "SENTRY_DSN",
    "METRICS_PORT",
    "WORKER_METRICS_PORT",
}
SERVICE_VARIABLES = {
    "auth": {"JWT_PRIVATE_KEY_FILE", "ADMIN_EMAIL", "ADMIN_PASSWORD", "PUBLIC_URL", "EMAIL_LINK_KEY_FILE"},
    "tasks": set(),
    "admin": {"AUTH_URL", "TASKS_URL"},
    "notify": {"SMTP_URL", "REMINDER_LEAD_MINUTES", "EMAIL_LINK_KEY_FILE"},
}
# Values that must not differ between Compose and Kubernetes (the others name hosts or secrets).
SHARED_VALUES = {
    "TASKFLOW_ENV",
    "MONGODB_DB_PREFIX",
    "JWKS_URL",
    "AUTH_URL",
    "TASKS_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "METRICS_PORT",
    "WORKER_METRICS_PORT",
    "REMINDER_LEAD_MINUTES",
}
SAMPLE_ID = "65f0c0ffee0ddba11ca7f00d"
NOT_ROUTED = ["/healthz", "/readyz", "/metrics", "/internal/users", "/api/v1/tasksx", "/api/v2/tasks"]


def kong() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "gateway" / "kong.yml").read_text())


def port_of(url: str) -> int:
    return urlsplit(url).port


def compose_value(value: str) -> str:
    """A Compose environment value with ``${NAME:-default}`` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_every_port_agrees_with_design_section_2() -> None:
    ports = design_ports()
    services = compose.load()["services"]
    resources = kube.build("prod")
    config = kube.config_map(resources, "taskflow-config")
    kong_services = {service["name"]: service for service in kong()["services"]}

    for name in SERVICES:
        port = ports[name]
        assert kong_services[name]["url"] == f"http://{name}:{port}"
        assert int(dockerfiles.stages(name)[-1].env()[f"{name.upper()}_PORT"]) == port
        assert services[name]["expose"] == [str(port)]
        assert config[f"{name.upper()}_PORT"] == str(port)
        service = kube.one(resources, "Service", name)
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "http")]
        pod = kube.pod_template(kube.one(resources, "Deployment", name))
        assert pod["spec"]["containers"][0]["ports"] == [
            {"name": "http", "containerPort": port},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ]
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
    assert config["METRICS_PORT"] == services["auth"]["environment"]["METRICS_PORT"] == str(METRICS_PORT)
    assert (
        config["WORKER_METRICS_PORT"]
        == services["auth-worker"]["environment"]["WORKER_METRICS_PORT"]
        == str(WORKER_METRICS_PORT)
    )

    gateway, tls = ports["gateway"], ports["gateway tls"]
    listen = f"0.0.0.0:{gateway}, 0.0.0.0:{tls} http2 ssl"
    assert services["gateway"]["environment"]["KONG_PROXY_LISTEN"] == listen
    assert [port["port"] for port in kube.one(resources, "Service", "gateway")["spec"]["ports"]] == [gateway, tls]
    kong_container = kube.pod_template(kube.one(resources, "Deployment", "gateway"))["spec"]["containers"][0]
    assert {"name": "proxy", "containerPort": gateway} in kong_container["ports"]
    assert {"name": "proxy-tls", "containerPort": tls} in kong_container["ports"]
    assert {"name": "KONG_PROXY_LISTEN", "value": listen} in kong_container["env"]

    mongodb = ports["mongodb/ferretdb"]
    assert compose.url(services["auth"]["environment"]["MONGODB_URI"]).port == mongodb
    hosts = config["MONGODB_ADDRESS"].split("/", 1)[0]
    assert {int(host.rsplit(":", 1)[1]) for host in hosts.split(",")} == {mongodb}
    assert kube.one(resources, "Service", "mongo")["spec"]["ports"][0]["port"] == mongodb

    rabbitmq = ports["rabbitmq"]
    credentials_filled = re.sub(r"\$\{[^}]*\}", "x", services["auth"]["environment"]["RABBITMQ_URL"])
    assert urlsplit(credentials_filled).hostname == "rabbitmq" and port_of(credentials_filled) == rabbitmq
    kubernetes_url = kube.env_value(kube.env(kube.one(resources, "Deployment", "auth")), "RABBITMQ_URL")
    assert urlsplit(kubernetes_url).hostname == "rabbitmq" and port_of(kubernetes_url) == rabbitmq
    amqp = next(p for p in kube.one(resources, "Service", "rabbitmq")["spec"]["ports"] if p["name"] == "amqp")
    assert amqp["port"] == rabbitmq

    otlp = ports["otlp/http"]
    kong_otel = next(plugin for plugin in kong()["plugins"] if plugin["name"] == "opentelemetry")
    for endpoint in (
        services["auth"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"],
        config["OTEL_EXPORTER_OTLP_ENDPOINT"],
        kong_otel["config"]["traces_endpoint"],
    ):
        assert urlsplit(endpoint).hostname == "jaeger" and port_of(endpoint) == otlp
    jaeger_ports = {p["name"]: p["port"] for p in kube.one(resources, "Service", "jaeger")["spec"]["ports"]}
    assert jaeger_ports["otlp-http"] == otlp

    ui = ports["jaeger ui"]
    assert services["jaeger"]["ports"] == [f"127.0.0.1:{ui}:{ui}"]
    assert jaeger_ports["ui"] == ui


@pytest.mark.parametrize("service", SERVICES)
def test_each_process_gets_the_variables_it_needs_and_only_documented_ones(service: str) -> None:
    documented = design_variables() | OUR_VARIABLES
    needed = COMMON_VARIABLES | SERVICE_VARIABLES[service]
    services = compose.load()["services"]
    resources = kube.build("prod")
    config_maps = kube.config_maps(resources)
    config = kube.config_map(resources, "taskflow-config")
    image = dockerfiles.stages(service)[-1].env()
    assert {"HOST", f"{service.upper()}_PORT", "METRICS_PORT", "WORKER_METRICS_PORT", "TASKFLOW_ENV"} <= set(image)

    for name in (service, f"{service}-worker"):
        in_compose = services[name]["environment"]
        in_kubernetes = kube.env_names(kube.one(resources, "Deployment", name), config_maps)
        assert needed <= set(in_compose) and set(in_compose) <= documented, name
        assert needed <= in_kubernetes and in_kubernetes <= documented, name
        kubernetes_values = {
            **config,
            **{
                variable["name"]: variable["value"]
                for variable in kube.pod_template(kube.one(resources, "Deployment", name))["spec"]["containers"][0][
                    "env"
                ]
                if "value" in variable
            },
        }
        for variable in SHARED_VALUES & set(in_compose):
            assert compose_value(in_compose[variable]) == kubernetes_values[variable], (name, variable)


def test_service_urls_name_the_services_at_their_design_ports() -> None:
    ports = design_ports()
    config = kube.config_map(kube.build("prod"), "taskflow-config")
    assert config["JWKS_URL"] == f"http://auth:{ports['auth']}/api/v1/auth/jwks.json"
    assert config["AUTH_URL"] == f"http://auth:{ports['auth']}"
    assert config["TASKS_URL"] == f"http://tasks:{ports['tasks']}"


def design_routes() -> list[tuple[str, str]]:
    """(owning service, concrete path) for every endpoint of DESIGN §4's tables."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = re.search(r"^## 4\. .*?(?=^## )", text, re.MULTILINE | re.DOTALL).group(0)
    routes, owner = [], None
    for line in section.splitlines():
        if heading := re.match(r"^### (\w+)", line):
            owner = heading.group(1)
        elif line.startswith("| ") and owner:
            cell = line.split("|")[1]
            for path in re.findall(r"\b(?:GET|POST|PATCH|PUT|DELETE) (/\S+)", cell):
                routes.append((owner, "/api/v1" + path.replace("{id}", SAMPLE_ID)))
    return routes


def routed_to(path: str) -> set[str]:
    """The Kong services with a route whose regex path matches ``path`` (Kong anchors them at the start)."""
    return {
        service["name"]
        for service in kong()["services"]
        for route in service["routes"]
        for pattern in route["paths"]
        if re.match(pattern.removeprefix("~"), path)
    }


def test_kong_routes_every_design_endpoint_to_its_service() -> None:
    routes = design_routes()
    assert {owner for owner, _ in routes} == set(SERVICES)
    assert len(routes) >= 20
    for owner, path in routes:
        assert routed_to(path) == {owner}, path


@pytest.mark.parametrize("path", NOT_ROUTED)
def test_probes_metrics_and_internal_apis_are_not_routed(path: str) -> None:
    assert routed_to(path) == set()


PAGES = ("~/verify-email", "~/$", "~/assets/")
"""Routes of web pages outside the API prefix: the page an email-verification link opens, and the
web client's page and its files."""


def test_every_kong_route_is_a_regex_kong_keeps_unstripped() -> None:
    for service in kong()["services"]:
        for route in service["routes"]:
            assert route["strip_path"] is False
            assert all(path.startswith(("~/api/v1/", *PAGES)) for path in route["paths"]), route["name"]
