"""PromQL as the observability files use it: which metrics an expression reads, which metrics
TaskFlow exposes, and a check by Prometheus's own parser (promtool)."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import yaml
from prometheus_client.registry import Collector
from taskflow_common import health, metrics
from taskflow_common.events import consumer, outbox, publisher

from .repo import tool

# Series other exporters expose: RabbitMQ's rabbitmq_prometheus plugin (its detailed endpoint,
# family queue_coarse_metrics), kube-state-metrics (Deployments, StatefulSets, the backup's
# CronJob), the kubelet's volume statistics and cert-manager.
EXTERNAL_METRICS = {
    "rabbitmq_detailed_queue_messages",
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas_available",
    "kube_statefulset_replicas",
    "kube_statefulset_status_replicas_ready",
    "kubelet_volume_stats_available_bytes",
    "kubelet_volume_stats_capacity_bytes",
    "certmanager_certificate_expiration_timestamp_seconds",
    "certmanager_certificate_ready_status",
    "kube_cronjob_created",
    "kube_cronjob_status_last_successful_time",
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS_AND_RANGES = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def exposed_metrics() -> set[str]:
    """The series names TaskFlow's own code exposes on its metrics ports (services and workers)."""
    stub_store = SimpleNamespace(depth=lambda: (1, datetime.now(UTC)))
    collectors: list[Collector] = [
        metrics.REQUEST_DURATION,
        health.DEPENDENCY_UP,
        publisher.PUBLISHED,
        publisher.PUBLISH_FAILURES,
        consumer.CONSUMED,
        consumer.HANDLER_SECONDS,
        outbox.OutboxCollector(stub_store),
    ]
    return {
        family.name + suffix
        for collector in collectors
        for family in collector.collect()
        for suffix in _SUFFIXES[family.type]
    }


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: identifiers left once strings, groupings, label matchers,
    ranges and function calls are set aside."""
    bare = _MATCHERS_AND_RANGES.sub(" ", _GROUPINGS.sub(" ", _STRINGS.sub('""', expr)))
    return {name for name in _IDENTIFIER.findall(bare) if name.lower() not in _KEYWORDS}


def check_parses(exprs: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run promtool on ``exprs`` as recording rules: Prometheus's parser and type checks."""
    rules = {
        "groups": [{"name": "parse", "rules": [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]
    }
    path = workdir / "exprs.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
