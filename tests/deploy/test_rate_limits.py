"""Issue 21 §4: Kong counts its rate limits in Redis, deployed beside it in Compose and Kubernetes
(probed, with a disruption budget, reachable from Kong alone), so N Kong nodes allow each limit
once; the local nginx, the one gateway node there, renders the same limits from the same file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from . import compose, kube
from .repo import ROOT

REDIS_PORT = 6379


def rate_limiting_plugins() -> list[dict[str, Any]]:
    kong = yaml.safe_load((ROOT / "gateway" / "kong.yml").read_text())
    plugins = [*kong["plugins"]]
    for service in kong["services"]:
        for route in service["routes"]:
            plugins += route.get("plugins", [])
    return [plugin for plugin in plugins if plugin["name"] == "rate-limiting"]


def test_every_kong_rate_limit_is_counted_in_redis_and_fails_open() -> None:
    plugins = rate_limiting_plugins()
    assert len(plugins) >= 2
    for plugin in plugins:
        config = plugin["config"]
        assert config["policy"] == "redis"
        assert (config["redis"]["host"], config["redis"]["port"]) == ("redis", REDIS_PORT)
        assert config["fault_tolerant"] is True, "Redis away must not fail the requests"


def test_compose_runs_a_probed_in_memory_redis_that_kong_waits_for() -> None:
    services = compose.load()["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7.")
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert redis["read_only"] is True and "ports" not in redis
    assert services["gateway"]["depends_on"]["redis"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_kubernetes_runs_a_probed_redis_behind_its_service(overlay: str) -> None:
    resources = kube.build(overlay)
    service = kube.one(resources, "Service", "redis")
    assert [(port["port"], port["targetPort"]) for port in service["spec"]["ports"]] == [(REDIS_PORT, "redis")]
    redis = kube.pod_template(kube.one(resources, "Deployment", "redis"))["spec"]["containers"][0]
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    assert redis["livenessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    assert {"name": "redis", "containerPort": REDIS_PORT} in redis["ports"]
    budget = kube.one(resources, "PodDisruptionBudget", "redis")
    assert budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "redis"


def test_only_kong_reaches_redis() -> None:
    resources = kube.build("prod")
    pods = kube.pods(resources)
    assert kube.admits(resources, pods["gateway"], pods["redis"], REDIS_PORT)
    for source in ("auth", "tasks-worker", "web", "rabbitmq", "jaeger"):
        assert not kube.admits(resources, pods[source], pods["redis"], REDIS_PORT), source
    assert not kube.admits(resources, kube.Pod("other", {}, {}), pods["redis"], REDIS_PORT)
