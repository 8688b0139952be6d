"""The Kubernetes manifests as kustomize renders them, and what the tests ask of them: pods,
Secrets referenced, and which connections the NetworkPolicies admit."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from .repo import ROOT, tool

OVERLAYS = ("dev", "prod")
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")


@cache
def _rendered(overlay: str) -> str:
    result = subprocess.run(
        [tool("kustomize"), "build", str(ROOT / "k8s" / "overlays" / overlay)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def build(overlay: str) -> list[dict[str, Any]]:
    """Every resource ``kustomize build k8s/overlays/<overlay>`` prints (a fresh copy each call)."""
    return list(yaml.safe_load_all(_rendered(overlay)))


def find(resources: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)]


def one(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(resources, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def workloads(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] in WORKLOADS]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_names(workload: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> set[str]:
    """Every variable the first container gets: its env, and the keys of ConfigMaps it takes whole."""
    container = pod_template(workload)["spec"]["containers"][0]
    names = {variable["name"] for variable in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(config_maps[source["configMapRef"]["name"]])
    return names


def env(workload: dict[str, Any], container: str | None = None) -> list[dict[str, Any]]:
    """The env list of ``workload``'s container named ``container`` (by default its first, not an
    init container)."""
    template = pod_template(workload)
    if container is None:
        return template["spec"]["containers"][0].get("env", [])
    (found,) = [c for c in containers(template) if c["name"] == container]
    return found.get("env", [])


def env_value(variables: list[dict[str, Any]], name: str) -> str | None:
    """The literal value of variable ``name`` (None when absent or taken from a source)."""
    return next((v.get("value") for v in variables if v["name"] == name), None)


def env_secret(variables: list[dict[str, Any]], name: str) -> tuple[str, str] | None:
    """(Secret, key) variable ``name`` is read from, or None when it is not a Secret's."""
    ref = next((v.get("valueFrom", {}).get("secretKeyRef") for v in variables if v["name"] == name), None)
    return (ref["name"], ref["key"]) if ref else None


def defined_before(variables: list[dict[str, Any]], first: str, then: str) -> bool:
    """Whether ``first`` precedes ``then``: the kubelet expands ``$(first)`` in ``then`` only so."""
    names = [v["name"] for v in variables]
    return first in names and then in names and names.index(first) < names.index(then)


def secret_readers(resources: list[dict[str, Any]], secret: str, key: str) -> set[str]:
    """The workloads with a container that reads ``key`` of ``secret`` into a variable."""
    return {
        workload["metadata"]["name"]
        for workload in workloads(resources)
        for container in containers(pod_template(workload))
        for variable in container.get("env", [])
        if variable.get("valueFrom", {}).get("secretKeyRef") == {"name": secret, "key": key}
    }


def config_maps(resources: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {r["metadata"]["name"]: r.get("data", {}) for r in find(resources, "ConfigMap")}


def config_map(resources: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    """The data of the one ConfigMap generated as ``prefix`` (kustomize appends a content hash)."""
    found = [data for name, data in config_maps(resources).items() if name.rsplit("-", 1)[0] == prefix]
    assert len(found) == 1, prefix
    return found[0]


def secret_references(resources: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Secret name → the keys the workloads read from it (env and volumes)."""
    found: dict[str, set[str]] = {}
    for workload in workloads(resources):
        template = pod_template(workload)
        for container in containers(template):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    found.setdefault(ref["name"], set()).add(ref["key"])
        for volume in template["spec"].get("volumes", []):
            if "secret" in volume:
                keys = {item["key"] for item in volume["secret"].get("items", [])}
                found.setdefault(volume["secret"]["secretName"], set()).update(keys)
    return found


@dataclass(frozen=True)
class Pod:
    """A pod as a NetworkPolicy sees it: its namespace, labels and named container ports."""

    namespace: str
    labels: dict[str, str]
    ports: dict[str, int]


def pods(resources: list[dict[str, Any]]) -> dict[str, Pod]:
    """Workload name → the pod it runs."""
    return {
        workload["metadata"]["name"]: Pod(
            workload["metadata"]["namespace"],
            pod_template(workload)["metadata"]["labels"],
            {
                port["name"]: port["containerPort"]
                for container in pod_template(workload)["spec"]["containers"]
                for port in container.get("ports", [])
            },
        )
        for workload in workloads(resources)
    }


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(peer: dict[str, Any], source: Pod, target: Pod, namespace_labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif source.namespace != target.namespace:
        return False
    return _selects(peer.get("podSelector", {}), source.labels)


def _port_matches(rule_port: dict[str, Any], target: Pod, port: int) -> bool:
    wanted = rule_port["port"]
    number = target.ports.get(wanted) if isinstance(wanted, str) else wanted
    if number is None:
        return False
    return number <= port <= rule_port.get("endPort", number)


def admits(resources: list[dict[str, Any]], source: Pod, target: Pod, port: int) -> bool:
    """Whether the ingress NetworkPolicies let ``source`` open a TCP connection to ``target:port``."""
    namespace_labels = {"kubernetes.io/metadata.name": source.namespace}
    policies = [
        policy
        for policy in find(resources, "NetworkPolicy")
        if policy["metadata"]["namespace"] == target.namespace
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and _selects(policy["spec"]["podSelector"], target.labels)
    ]
    if not policies:
        return True
    return any(
        (not rule.get("from") or any(_peer_matches(peer, source, target, namespace_labels) for peer in rule["from"]))
        and (not rule.get("ports") or any(_port_matches(p, target, port) for p in rule["ports"]))
        for policy in policies
        for rule in policy["spec"].get("ingress", [])
    )
