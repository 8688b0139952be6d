"""Issue 8 item 6: the Prometheus alerting rules and the Grafana dashboard, checked by promtool
(Prometheus's own parser and rule unit tests) and structurally against the metrics TaskFlow exposes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import promql
from .repo import ROOT, tool

OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "taskflow.rules.yml"
RULE_TESTS = OBSERVABILITY / "taskflow.rules.test.yml"
DASHBOARD = OBSERVABILITY / "taskflow-dashboard.json"
# Grafana's variables, as Grafana would interpolate them before sending a query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$service": ".+"}


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def grafana_interpolated(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_rules_pass_promtool_check() -> None:
    result = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_and_stay_quiet_as_their_unit_tests_expect() -> None:
    result = subprocess.run(
        [tool("promtool"), "test", "rules", RULE_TESTS.name], cwd=OBSERVABILITY, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert {rule["alert"] for rule in alerts()} == tested


def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    config = OBSERVABILITY / "prometheus.yml"
    result = subprocess.run([tool("promtool"), "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(config.read_text())["rule_files"] == [RULES.name]


@pytest.mark.parametrize(
    ("concern", "pattern"),
    [
        ("error rate", r'http_request_duration_seconds_count\{status=~"5\.\."\}'),
        ("p99 latency", r"histogram_quantile\(0\.99,[\s\S]*http_request_duration_seconds_bucket"),
        ("outbox lag", r"outbox_oldest_pending_age_seconds"),
        ("dead letters", r'rabbitmq_detailed_queue_messages\{queue=~"\.\+\\\\\.dlq"\}'),
        ("readiness", r"kube_deployment_status_replicas_available"),
        ("disk fill (issue 22)", r"predict_linear\(kubelet_volume_stats_available_bytes"),
        ("a volume almost full (issue 22)", r"kubelet_volume_stats_available_bytes[\s\S]*/ kubelet_volume_stats_capacity_bytes"),
        ("certificate expiry (issue 22)", r"certmanager_certificate_expiration_timestamp_seconds\{[^}]*\} - time\(\)"),
    ],
)
def test_an_alert_watches_each_concern_of_issue_8(concern: str, pattern: str) -> None:
    assert any(re.search(pattern, rule["expr"]) for rule in alerts()), concern


def test_every_alert_has_a_severity_and_says_what_to_do() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rules_read_only_metrics_that_exist() -> None:
    known = promql.exposed_metrics() | promql.EXTERNAL_METRICS
    for rule in alerts():
        used = promql.metric_names(rule["expr"])
        assert used and used <= known, (rule["alert"], used - known)


def test_dashboard_is_well_formed_grafana_json() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "gauge", "bargauge", "table"}
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_every_panel_query_reads_a_metric_taskflow_or_rabbitmq_exposes() -> None:
    known = promql.exposed_metrics() | promql.EXTERNAL_METRICS
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            used = promql.metric_names(target["expr"])
            assert used and used <= known, (panel["title"], used - known)


def test_every_panel_query_parses_as_promql(tmp_path: Path) -> None:
    result = promql.check_parses([grafana_interpolated(expr) for expr in panel_exprs()], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_parse_check_rejects_a_broken_query(tmp_path: Path) -> None:
    assert (
        promql.check_parses(["sum by (service) (rate(http_request_duration_seconds_count[5m])"], tmp_path).returncode
        != 0
    )


@pytest.mark.parametrize(
    ("concern", "pattern"),
    [
        ("request rate", r"^sum by \(service\) \(rate\(http_request_duration_seconds_count\{"),
        ("error rate", r'status=~"5\.\."[\s\S]*/ sum by \(service\)'),
        ("p50 per route", r"histogram_quantile\(0\.5, sum by \(service, route, le\)"),
        ("p95 per route", r"histogram_quantile\(0\.95, sum by \(service, route, le\)"),
        ("p99 per route", r"histogram_quantile\(0\.99, sum by \(service, route, le\)"),
        ("outbox lag", r"outbox_oldest_pending_age_seconds"),
        ("dead-letter queue depth", r"rabbitmq_detailed_queue_messages\{queue=~"),
    ],
)
def test_dashboard_shows_each_concern_of_issue_8(concern: str, pattern: str) -> None:
    assert any(re.search(pattern, expr) for expr in panel_exprs()), concern
