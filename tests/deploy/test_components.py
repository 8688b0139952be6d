"""Issue 22 §2 and §4: the optional kustomize components, as k8s/overlays/prod-tls uses them. TLS
at the edge (a Gateway API Gateway with a cert-manager Certificate, HTTP redirected to HTTPS, HSTS)
and monitoring for kube-prometheus-stack (the alerting rules as a PrometheusRule, PodMonitors).

Their kinds are custom resources whose schemas (Gateway API, cert-manager, Prometheus Operator)
are not available offline here, so these tests check their structure and every reference between
them and the rest of the manifests; every built-in resource still validates against the
Kubernetes schemas."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from . import kube
from .repo import ROOT
from .test_kubernetes import KUBERNETES_VERSIONS

OVERLAY = "prod-tls"
CUSTOM_GROUPS = ("gateway.networking.k8s.io/", "cert-manager.io/", "monitoring.coreos.com/")
RULES = ROOT / "deploy" / "observability" / "taskflow.rules.yml"
MONITORING = kube.Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, {})


def resources() -> list[dict[str, Any]]:
    return kube.build(OVERLAY)


def custom(kind: str) -> list[dict[str, Any]]:
    return kube.find(resources(), kind)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_in_resource_validates_and_the_custom_ones_are_the_expected_kinds(version: str) -> None:
    kinds = set()
    for resource in resources():
        if resource["apiVersion"].startswith(CUSTOM_GROUPS):
            kinds.add((resource["apiVersion"], resource["kind"]))
            assert resource["metadata"]["namespace"] == "taskflow", resource["metadata"]["name"]
        else:
            kubernetes_validate.validate(resource, version, strict=True)
    assert kinds == {
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("cert-manager.io/v1", "Issuer"),
        ("cert-manager.io/v1", "Certificate"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
    }


# TLS at the edge ---------------------------------------------------------------------------------


def test_the_acme_solver_is_reachable_through_the_default_deny_policy() -> None:
    """cert-manager's HTTP-01 solver pod runs in this namespace on 8089; the Gateway's proxy (in
    any namespace) and cert-manager's self-check must reach it, or no certificate is issued."""
    solver = kube.Pod("taskflow", {"acme.cert-manager.io/http01-solver": "true"}, {"http": 8089})
    for source in (kube.Pod("envoy-gateway-system", {"app": "envoy"}, {}), kube.Pod("cert-manager", {"app": "cert-manager"}, {})):
        assert kube.admits(resources(), source, solver, 8089)
    assert not kube.admits(kube.build("prod"), kube.Pod("cert-manager", {}, {}), solver, 8089)  # prod alone denies it


def test_gateway_proxy_pods_in_the_namespace_are_reachable_on_the_listener_ports_only() -> None:
    """Istio and NGINX Gateway Fabric run the Gateway's proxy in its namespace, labelled with the
    Gateway's name (GEP-1762) and listening on the listener ports: clients from anywhere must pass
    the namespace's default-deny ingress there, and nowhere else."""
    (gateway,) = custom("Gateway")
    ports = {item["port"] for item in gateway["spec"]["listeners"]}
    proxy = kube.Pod("taskflow", {"gateway.networking.k8s.io/gateway-name": gateway["metadata"]["name"]}, {})
    clients = (kube.Pod("istio-system", {}, {}), kube.Pod("taskflow", {}, {}))
    for port in ports:
        assert all(kube.admits(resources(), client, proxy, port) for client in clients), port
        assert not kube.admits(kube.build("prod"), clients[0], proxy, port), "prod alone denies it"
    assert not kube.admits(resources(), clients[0], proxy, 15000), "only the listener ports"
    another = kube.Pod("taskflow", {"gateway.networking.k8s.io/gateway-name": "someone-elses"}, {})
    assert not kube.admits(resources(), clients[0], another, 443)
    readme = " ".join((ROOT / "k8s" / "README.md").read_text().split())
    assert "restricted Pod Security Standard, so those pods must pass it" in readme


def test_behind_the_gateway_kong_counts_clients_by_their_forwarded_address() -> None:
    kong = next(c for c in kube.containers(kube.pod_template(kube.one(resources(), "Deployment", "gateway")))
                if c["name"] == "kong")
    assert kube.env_value(kong["env"], "KONG_REAL_IP_HEADER") == "X-Forwarded-For"
    assert kube.env_value(kong["env"], "KONG_REAL_IP_RECURSIVE") == "on"
    assert "10.0.0.0/8" in kube.env_value(kong["env"], "KONG_TRUSTED_IPS")


# The longest upstream idle timeout of a common Gateway's proxy by default, in seconds: Envoy's
# (Envoy Gateway, Istio, Cilium) 1 h; Google's load balancers keep 600 s, NGINX 60 s.
GATEWAY_UPSTREAM_IDLE = 3600
NGINX_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def nginx_seconds(value: str) -> float:
    """An nginx time ("3700s", "1h2m", "75") in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d)?", value)
    assert "".join(number + unit for number, unit in parts) == value, value
    return sum(int(number) * NGINX_TIME_UNITS[unit or "s"] for number, unit in parts)


def test_behind_the_gateway_kong_keeps_idle_client_connections_longer_than_the_gateway() -> None:
    """The Gateway's proxy is Kong's client: Kong must give up an idle connection after the proxy
    does, or the proxy reuses one Kong is closing (a 502). Only behind the Gateway: without it
    Kong keeps its default."""
    def keepalive(overlay: str) -> str | None:
        kong = next(c for c in kube.containers(kube.pod_template(kube.one(kube.build(overlay), "Deployment", "gateway")))
                    if c["name"] == "kong")
        return kube.env_value(kong["env"], "KONG_NGINX_HTTP_KEEPALIVE_TIMEOUT")

    value = keepalive(OVERLAY)
    assert value is not None and nginx_seconds(value) > GATEWAY_UPSTREAM_IDLE
    assert keepalive("prod") is None
    readme = " ".join((ROOT / "k8s" / "README.md").read_text().split())
    assert f"to {nginx_seconds(value):.0f} s (`KONG_NGINX_HTTP_KEEPALIVE_TIMEOUT`)" in readme


def listener(name: str) -> dict[str, Any]:
    (gateway,) = custom("Gateway")
    return next(item for item in gateway["spec"]["listeners"] if item["name"] == name)


def routes_on(section: str) -> list[dict[str, Any]]:
    return [
        route
        for route in custom("HTTPRoute")
        if any(parent.get("sectionName") == section for parent in route["spec"]["parentRefs"])
    ]


def test_https_terminates_with_the_certificate_cert_manager_keeps_for_the_public_host() -> None:
    https = listener("https")
    assert (https["protocol"], https["port"], https["tls"]["mode"]) == ("HTTPS", 443, "Terminate")
    (certificate,) = custom("Certificate")
    assert https["tls"]["certificateRefs"] == [{"kind": "Secret", "name": certificate["spec"]["secretName"]}]
    public_host = urlsplit(kube.config_map(resources(), "taskflow-config")["PUBLIC_URL"]).hostname
    assert certificate["spec"]["dnsNames"] == [https["hostname"]] == [listener("http")["hostname"]] == [public_host]
    (issuer,) = custom("Issuer")
    assert certificate["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
    solver = issuer["spec"]["acme"]["solvers"][0]["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert solver == [{"name": custom("Gateway")[0]["metadata"]["name"], "kind": "Gateway", "sectionName": "http"}]


def test_plain_http_only_redirects_to_https() -> None:
    assert listener("http")["port"] == 80
    (redirect,) = routes_on("http")
    for rule in redirect["spec"]["rules"]:
        assert "backendRefs" not in rule
        assert rule["filters"] == [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]


def test_https_reaches_kong_and_every_response_carries_hsts() -> None:
    (route,) = routes_on("https")
    kong = kube.one(resources(), "Service", "gateway")
    assert kong["spec"]["type"] == "ClusterIP" and "externalTrafficPolicy" not in kong["spec"]
    for rule in route["spec"]["rules"]:
        assert rule["backendRefs"] == [{"name": "gateway", "port": kong["spec"]["ports"][0]["port"]}]
        (header,) = rule["filters"][0]["responseHeaderModifier"]["set"]
        assert header["name"] == "Strict-Transport-Security"
        assert int(re.match(r"max-age=(\d+)", header["value"]).group(1)) >= 31536000


# Monitoring for kube-prometheus-stack ----------------------------------------------------------------


def test_the_prometheus_rule_is_exactly_the_unit_tested_rules_file() -> None:
    (rule,) = custom("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], "run scripts/prometheus-rule"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


ENDPOINT_FIELDS = {"port", "path", "params", "relabelings", "interval"}
RELABEL_FIELDS = {"sourceLabels", "targetLabel", "regex", "action", "replacement"}


def test_every_pod_monitor_endpoint_is_a_named_metrics_port_that_monitoring_may_reach() -> None:
    everything = resources()
    pods = kube.pods(everything)
    scraped: set[str] = set()
    for monitor in custom("PodMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selected = [name for name, pod in pods.items() if kube._selects(monitor["spec"]["selector"], pod.labels)]
        assert selected, monitor["metadata"]["name"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert set(endpoint) <= ENDPOINT_FIELDS and endpoint["path"].startswith("/metrics")
            for relabeling in endpoint.get("relabelings", []):
                assert set(relabeling) <= RELABEL_FIELDS
            for name in selected:
                port = pods[name].ports[endpoint["port"]]
                assert kube.admits(everything, MONITORING, pods[name], port), (name, endpoint["port"])
        scraped |= set(selected)
    app = {f"{service}{suffix}" for service in ("auth", "tasks", "admin", "notify") for suffix in ("", "-worker")}
    assert scraped == app | {"gateway", "rabbitmq"}


def test_services_are_labelled_as_the_rules_group_them() -> None:
    (monitor,) = [m for m in custom("PodMonitor") if m["metadata"]["name"] == "taskflow"]
    relabelings = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {r["targetLabel"]: r["sourceLabels"] for r in relabelings} == {
        "service": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "component": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
    }


def target_labels(endpoint: dict[str, Any]) -> dict[str, str]:
    """The labels an endpoint's relabelings add to each of its targets, beyond the ones Prometheus
    Operator gives every endpoint of a monitor alike (namespace, pod, container, endpoint, job,
    instance): a meta label's value stands for itself, but `__metrics_path__` is the path."""
    meta = {"__metrics_path__": endpoint["path"]}
    labels = {}
    for relabeling in endpoint.get("relabelings", []):
        assert relabeling.get("action", "replace") == "replace" and "regex" not in relabeling
        sources = ";".join(meta.get(name, name) for name in relabeling.get("sourceLabels", []))
        labels[relabeling["targetLabel"]] = relabeling.get("replacement", "$1").replace("$1", sources)
    return labels


def test_endpoints_scraping_the_same_port_give_their_targets_different_labels() -> None:
    """Two scrapes of one pod's port with the same target labels write the same `up` and `scrape_*`
    series (and any metric both expose): Prometheus keeps one, alternating between them."""
    for monitor in custom("PodMonitor"):
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            key = (endpoint["port"], tuple(sorted(target_labels(endpoint).items())))
            assert key not in seen, (monitor["metadata"]["name"], seen.get(key), endpoint["path"])
            seen[key] = endpoint["path"]
