"""k8s/: every overlay builds with kustomize and validates against the Kubernetes schemas of the
oldest and newest versions we support; the workloads are probed, sized, locked down and wired to
Secrets by name only; the NetworkPolicies admit exactly the connections the system needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
import yaml

from . import kube
from .repo import METRICS_PORT, ROOT, SERVICES, WORKER_METRICS_PORT

KUBERNETES_VERSIONS = ("1.31", "1.37")
K8S_README = ROOT / "k8s" / "README.md"
APP_DEPLOYMENTS = (*SERVICES, *(f"{service}-worker" for service in SERVICES))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_every_resource_validates_against_the_kubernetes_schemas(overlay: str, version: str) -> None:
    resources = kube.build(overlay)
    assert len(resources) > 40
    for resource in resources:
        kubernetes_validate.validate(resource, version, strict=True)


def test_schema_validation_rejects_a_misspelt_field() -> None:
    deployment = kube.one(kube.build("prod"), "Deployment", "tasks")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_everything_lives_in_the_taskflow_namespace_which_enforces_restricted_pods(overlay: str) -> None:
    resources = kube.build(overlay)
    namespace = kube.one(resources, "Namespace", "taskflow")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {"taskflow"}


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_services_are_probed_on_healthz_and_readyz_and_workers_on_their_metrics(overlay: str) -> None:
    resources = kube.build(overlay)
    for service in SERVICES:
        web = kube.pod_template(kube.one(resources, "Deployment", service))["spec"]["containers"][0]
        assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        worker = kube.pod_template(kube.one(resources, "Deployment", f"{service}-worker"))["spec"]["containers"][0]
        assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert {port["name"]: port["containerPort"] for port in worker["ports"]} == {"metrics": WORKER_METRICS_PORT}


@pytest.mark.parametrize("service", SERVICES)
def test_worker_runs_the_service_image_with_the_worker_module(service: str) -> None:
    resources = kube.build("prod")
    web = kube.pod_template(kube.one(resources, "Deployment", service))["spec"]["containers"][0]
    worker = kube.pod_template(kube.one(resources, "Deployment", f"{service}-worker"))["spec"]["containers"][0]
    assert worker["image"] == web["image"]
    assert web["image"].startswith(f"registry.example.com/taskflow/{service}@sha256:")
    assert "command" not in web, "the image's entrypoint is gunicorn"
    assert worker["command"] == ["python", "-m", f"taskflow_{service}.worker"]


def test_prod_runs_three_replicas_with_the_capacity_plan_resources() -> None:
    resources = kube.build("prod")
    for name in (f"{service}-worker" for service in SERVICES):
        assert kube.one(resources, "Deployment", name)["spec"]["replicas"] == 3, name
    for name in APP_DEPLOYMENTS:
        container = kube.pod_template(kube.one(resources, "Deployment", name))["spec"]["containers"][0]
        assert container["resources"] == {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        }, name
    for hpa in kube.find(resources, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] > 3
    for statefulset in ("mongo", "rabbitmq"):
        assert kube.one(resources, "StatefulSet", statefulset)["spec"]["replicas"] == 3


def test_dev_runs_one_of_everything() -> None:
    resources = kube.build("dev")
    floors = {hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"]["minReplicas"] for hpa in kube.find(resources, "HorizontalPodAutoscaler")}
    assert {
        w["metadata"]["name"]: w["spec"].get("replicas", floors.get(w["metadata"]["name"]))
        for w in kube.find(resources, "Deployment") + kube.find(resources, "StatefulSet")
    } == {name: 1 for name in (*APP_DEPLOYMENTS, "gateway", "web", "jaeger", "mongo", "rabbitmq", "redis")}


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for workload in kube.workloads(kube.build(overlay)):
        for container in kube.containers(kube.pod_template(workload)):
            assert set(container["resources"]) == {"requests", "limits"}, (
                workload["metadata"]["name"],
                container["name"],
            )
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), workload["metadata"]["name"]


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_web_services_and_gateway_autoscale_and_every_long_running_workload_has_a_disruption_budget(
    overlay: str,
) -> None:
    resources = kube.build(overlay)
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in kube.find(resources, "HorizontalPodAutoscaler")}
    assert scaled == {*SERVICES, "gateway"}
    budgets = [pdb["spec"]["selector"]["matchLabels"] for pdb in kube.find(resources, "PodDisruptionBudget")]
    for workload in kube.find(resources, "Deployment") + kube.find(resources, "StatefulSet"):
        if workload["metadata"]["name"] == "jaeger":
            continue  # one in-memory replica: a budget would only block node drains
        labels = kube.pod_template(workload)["metadata"]["labels"]
        assert any(all(labels.get(k) == v for k, v in budget.items()) for budget in budgets), workload["metadata"][
            "name"
        ]


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay: str) -> None:
    for workload in kube.workloads(kube.build(overlay)):
        name = workload["metadata"]["name"]
        spec = kube.pod_template(workload)["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["enableServiceLinks"] is False, f"{name}: Service links would set <NAME>_PORT=tcp://..."
        assert spec["automountServiceAccountToken"] is False, name
        for container in kube.containers(kube.pod_template(workload)):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            # RabbitMQ's init containers write only into volumes of their own.
            writes_own_volume = container["name"] in {"erlang-cookie", "definitions"}
            assert writes_own_volume or "/tmp" in mounts or "/kong_prefix" in mounts, name


@pytest.mark.parametrize("name", APP_DEPLOYMENTS)
def test_app_pods_write_only_to_an_in_memory_tmp(name: str) -> None:
    template = kube.pod_template(kube.one(kube.build("prod"), "Deployment", name))
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    container = template["spec"]["containers"][0]
    writable = [mount for mount in container["volumeMounts"] if not mount.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"


def documented_secrets() -> dict[str, set[str]]:
    """Secret name → keys, from the `kubectl create secret generic` commands of k8s/README.md."""
    text = K8S_README.read_text().replace("\\\n", " ")
    found: dict[str, set[str]] = {}
    for command in re.findall(r"kubectl -n taskflow create secret generic .*", text):
        name = re.search(r"create secret generic (\S+)", command).group(1)
        found[name] = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", command))
    return found


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_secrets_are_referenced_by_name_and_each_is_documented_with_its_keys(overlay: str) -> None:
    resources = kube.build(overlay)
    assert kube.find(resources, "Secret") == [], "secret values never live in the repository"
    assert kube.secret_references(resources) == documented_secrets()


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_every_configmap_a_workload_reads_is_generated(overlay: str) -> None:
    resources = kube.build(overlay)
    names = set(kube.config_maps(resources))
    for workload in kube.workloads(resources):
        template = kube.pod_template(workload)
        referenced = {v["configMap"]["name"] for v in template["spec"].get("volumes", []) if "configMap" in v}
        for container in kube.containers(template):
            referenced |= {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
            referenced |= {
                v["valueFrom"]["configMapKeyRef"]["name"]
                for v in container.get("env", [])
                if "configMapKeyRef" in v.get("valueFrom", {})
            }
        assert referenced <= names, (workload["metadata"]["name"], referenced - names)


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_kong_loads_exactly_gateway_kong_yml_which_deck_accepts(overlay: str, tmp_path: Path) -> None:
    resources = kube.build(overlay)
    kong_yml = kube.config_map(resources, "kong-declarative")["kong.yml"]
    assert kong_yml == (ROOT / "gateway" / "kong.yml").read_text()
    (tmp_path / "kong.yml").write_text(kong_yml)
    result = subprocess.run(["deck", "validate", "-s", str(tmp_path / "kong.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    container = kube.pod_template(kube.one(resources, "Deployment", "gateway"))["spec"]["containers"][0]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["KONG_DATABASE"] == "off" and env["KONG_ADMIN_LISTEN"] == "off"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "declarative")
    assert env["KONG_DECLARATIVE_CONFIG"] == f"{mount['mountPath']}/kong.yml"
    assert env["KONG_TRACING_INSTRUMENTATIONS"] == "all" and 0 < float(env["KONG_TRACING_SAMPLING_RATE"]) <= 1


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_each_kong_upstream_target_resolves_to_every_ready_pod_so_its_health_checks_see_each(overlay: str) -> None:
    """An upstream's one target is a Service's name. A ClusterIP Service would give Kong one
    virtual address, its active check landing on whichever pod the proxy picks: one unready pod of
    three could take the whole service out, a broken one stay in. A headless Service's name
    resolves to each ready pod, which Kong balances and checks one by one (on the pod's own port:
    a headless Service maps no port)."""
    resources = kube.build(overlay)
    kong = yaml.safe_load((ROOT / "gateway" / "kong.yml").read_text())
    for upstream in kong["upstreams"]:
        (target,) = upstream["targets"]
        host, port = target["target"].split(":")
        service = kube.one(resources, "Service", host)
        assert service["spec"].get("clusterIP") == "None", host
        (deployment,) = [workload for workload in kube.find(resources, "Deployment")
                         if kube.pod_template(workload)["metadata"]["labels"].items() >= service["spec"]["selector"].items()]
        ports = {p["containerPort"] for c in kube.containers(kube.pod_template(deployment)) for p in c.get("ports", [])}
        assert int(port) in ports, (host, ports)


def test_dashboard_and_alert_configmaps_are_the_observability_files() -> None:
    resources = kube.build("prod")
    observability = ROOT / "deploy" / "observability"
    prometheus = kube.config_map(resources, "taskflow-prometheus")
    assert prometheus == {name: (observability / name).read_text() for name in ("prometheus.yml", "taskflow.rules.yml")}
    dashboard = next(
        r for r in kube.find(resources, "ConfigMap") if r["metadata"]["name"].startswith("taskflow-grafana-dashboard-")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"] == {"taskflow-dashboard.json": (observability / "taskflow-dashboard.json").read_text()}


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_mongodb_address_names_every_replica_set_member_and_the_init_job_the_same_count(overlay: str) -> None:
    resources = kube.build(overlay)
    members = kube.one(resources, "StatefulSet", "mongo")["spec"]["replicas"]
    uri = urlsplit("mongodb://" + kube.config_map(resources, "taskflow-config")["MONGODB_ADDRESS"])
    assert uri.netloc.split(",") == [f"mongo-{i}.mongo:27017" for i in range(members)]
    assert parse_qs(uri.query) == {
        "replicaSet": ["rs0"],
        "readPreference": ["primaryPreferred"],
        "authSource": ["admin"],
    }
    job = kube.pod_template(kube.one(resources, "Job", "mongo-init"))["spec"]["initContainers"][0]
    assert {v["name"]: v.get("value") for v in job["env"]}["MONGO_REPLICAS"] == str(members)
    assert "_id: 'rs0'" in job["command"][-1]
    mongod = kube.pod_template(kube.one(resources, "StatefulSet", "mongo"))["spec"]["containers"][0]
    assert mongod["args"][mongod["args"].index("--replSet") + 1] == "rs0"


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_rabbitmq_cluster_configuration_names_every_node(overlay: str) -> None:
    resources = kube.build(overlay)
    statefulset = kube.one(resources, "StatefulSet", "rabbitmq")
    config = kube.config_map(resources, "rabbitmq-config")["rabbitmq.conf"]
    listed = re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = (\S+)$", config, re.MULTILINE)
    replicas = statefulset["spec"]["replicas"]
    service = statefulset["spec"]["serviceName"]
    namespace = statefulset["metadata"]["namespace"]
    expected = [f"rabbit@rabbitmq-{i}.{service}.{namespace}.svc.cluster.local" for i in range(replicas)]
    assert listed == (expected if replicas > 1 else [])
    env = {v["name"]: v.get("value") for v in kube.pod_template(statefulset)["spec"]["containers"][0]["env"]}
    assert env["RABBITMQ_NODENAME"] == f"rabbit@$(POD_NAME).{service}.$(POD_NAMESPACE).svc.cluster.local"
    assert kube.one(resources, "Service", service)["spec"]["clusterIP"] == "None"


def test_scraped_pods_carry_the_labels_the_dashboards_group_by_and_expose_the_annotated_metrics_port() -> None:
    resources = kube.build("prod")
    scraped = {}
    for workload in kube.workloads(resources):
        template = kube.pod_template(workload)
        annotations = template["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            ports = {p["containerPort"]: p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            metrics_port = "status" if workload["metadata"]["name"] == "gateway" else "metrics"
            assert ports.get(int(annotations["prometheus.io/port"])) == metrics_port, workload["metadata"]["name"]
            labels = template["metadata"]["labels"]
            scraped[workload["metadata"]["name"]] = (
                labels["app.kubernetes.io/name"],
                labels["app.kubernetes.io/component"],
            )
    assert set(scraped) == {*APP_DEPLOYMENTS, "gateway"}
    rabbitmq = kube.pod_template(kube.one(resources, "StatefulSet", "rabbitmq"))["spec"]["containers"][0]
    assert {"name": "prometheus", "containerPort": 15692} in rabbitmq["ports"]
    jobs = yaml.safe_load((ROOT / "deploy" / "observability" / "prometheus.yml").read_text())["scrape_configs"]
    queues_job = next(job for job in jobs if job.get("metrics_path") == "/metrics/detailed")
    keep = next(rule for rule in queues_job["relabel_configs"] if rule["action"] == "keep")
    assert keep["regex"] == "rabbitmq;prometheus"


OUTSIDE = kube.Pod("other", {}, {})
MONITORING = kube.Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, {})


@pytest.fixture(scope="module")
def network() -> tuple[list, dict[str, kube.Pod]]:
    resources = kube.build("prod")
    return resources, kube.pods(resources)


def reachable(network: tuple[list, dict[str, kube.Pod]], source: kube.Pod | str, target: str, port: int) -> bool:
    resources, pods = network
    return kube.admits(resources, pods[source] if isinstance(source, str) else source, pods[target], port)


def test_only_the_gateway_is_reachable_from_outside(network: tuple[list, dict[str, kube.Pod]]) -> None:
    assert reachable(network, OUTSIDE, "gateway", 8000)
    assert not reachable(network, OUTSIDE, "gateway", 8100)
    for target, port in [(s, p) for s, p in zip(SERVICES, (5001, 5002, 5003, 5004), strict=True)] + [
        ("mongo", 27017),
        ("rabbitmq", 5672),
        ("rabbitmq", 15672),
        ("jaeger", 16686),
        ("jaeger", 4318),
    ]:
        assert not reachable(network, OUTSIDE, target, port), target


def test_the_gateway_alone_reaches_the_web_clients_files(network: tuple[list, dict[str, kube.Pod]]) -> None:
    assert reachable(network, "gateway", "web", 5005)
    assert not reachable(network, OUTSIDE, "web", 5005)
    assert not reachable(network, "auth", "web", 5005)


@pytest.mark.parametrize(("service", "port"), [("auth", 5001), ("tasks", 5002), ("admin", 5003), ("notify", 5004)])
def test_the_gateway_reaches_every_service_api_but_no_worker_or_datastore(
    network: tuple[list, dict[str, kube.Pod]], service: str, port: int
) -> None:
    assert reachable(network, "gateway", service, port)
    assert not reachable(network, "gateway", f"{service}-worker", WORKER_METRICS_PORT)
    assert not reachable(network, "gateway", "mongo", 27017)
    assert not reachable(network, "gateway", "rabbitmq", 5672)


@pytest.mark.parametrize("source", APP_DEPLOYMENTS)
def test_services_and_workers_reach_mongodb_rabbitmq_jaeger_and_auths_keys(
    network: tuple[list, dict[str, kube.Pod]], source: str
) -> None:
    assert reachable(network, source, "mongo", 27017)
    assert reachable(network, source, "rabbitmq", 5672)
    assert reachable(network, source, "jaeger", 4318)
    assert reachable(network, source, "auth", 5001)
    assert not reachable(network, source, "rabbitmq", 15672), "the management API is for port-forwarding operators"


def test_admin_alone_reaches_tasks_internally(network: tuple[list, dict[str, kube.Pod]]) -> None:
    assert reachable(network, "admin", "tasks", 5002)
    assert reachable(network, "admin-worker", "tasks", 5002)
    for source in ("auth", "notify", "notify-worker", "auth-worker"):
        assert not reachable(network, source, "tasks", 5002), source
    assert not reachable(network, "tasks", "admin", 5003)


def test_datastores_admit_their_peers_and_jobs_but_not_the_gateway_or_jaeger(
    network: tuple[list, dict[str, kube.Pod]],
) -> None:
    assert reachable(network, "mongo", "mongo", 27017)
    assert reachable(network, "mongo-init", "mongo", 27017)
    assert reachable(network, "mongo-backup", "mongo", 27017)
    assert reachable(network, "rabbitmq", "rabbitmq", 25672)
    assert not reachable(network, "jaeger", "mongo", 27017)
    assert not reachable(network, "mongo-backup", "rabbitmq", 5672)


@pytest.mark.parametrize(("service", "port"), [("auth", 5001), ("tasks", 5002), ("admin", 5003), ("notify", 5004)])
def test_monitoring_scrapes_a_services_metrics_port_but_never_its_api(
    network: tuple[list, dict[str, kube.Pod]], service: str, port: int
) -> None:
    assert reachable(network, MONITORING, service, METRICS_PORT)
    assert not reachable(network, MONITORING, service, port), "the API port serves /internal/ too"


def test_monitoring_scrapes_metrics_ports_only(network: tuple[list, dict[str, kube.Pod]]) -> None:
    assert reachable(network, MONITORING, "tasks-worker", WORKER_METRICS_PORT)
    assert reachable(network, MONITORING, "gateway", 8100)
    assert reachable(network, MONITORING, "rabbitmq", 15692)
    assert not reachable(network, MONITORING, "rabbitmq", 5672)
    assert not reachable(network, MONITORING, "mongo", 27017)
