"""Issue 22 §1: what broke when the manifests were operated, each finding held offline. Readiness
follows `/readyz` (the database only), production needs its sender and address and accepts the
README's first admin, claim templates carry no labels and one kustomize version serves tests and
operators, RabbitMQ is ready only as part of a formed cluster (its probe's command is run against a
real RabbitMQ node) and repairs quorum queue membership, images come from a registry of ours by
digest, the autoscalers alone own replicas, and pods drain before they stop with keep-alive timeouts
shorter on each connection's client side."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from flask import Flask
from taskflow_auth.settings import AuthSettings
from taskflow_common import health
from taskflow_common.serving import gunicorn_settings
from taskflow_common.settings import ServiceSettings

from tests.support.infra import Infra

from . import compose, kube
from .repo import ROOT, SERVICES, tool

K8S_README = ROOT / "k8s" / "README.md"
README = ROOT / "README.md"
OUR_IMAGES = (*SERVICES, "web")


def env_sh(name: str) -> str:
    """The value scripts/env.sh pins for ``name``."""
    match = re.search(rf'^export {name}="([^"]+)"', (ROOT / "scripts" / "env.sh").read_text(), re.MULTILINE)
    assert match, name
    return match.group(1)


def container(resources: list, kind: str, name: str, index: int = 0) -> dict:
    return kube.pod_template(kube.one(resources, kind, name))["spec"]["containers"][index]


# 1. Readiness follows /readyz, which needs the database only ---------------------------------------


def test_readyz_stays_ready_while_the_broker_is_unreachable() -> None:
    # The blueprint the services serve, with the broker check they report (a real AMQP attempt at a
    # closed port) and a database that answers.
    app = Flask(__name__)
    broker_down = health.rabbitmq_check("amqp://guest:guest@127.0.0.1:1/%2F", timeout_seconds=1)
    app.register_blueprint(health.blueprint([health.Check("mongodb", lambda: None)], reported=[broker_down]))
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["mongodb"] == "ok" and response.json["checks"]["rabbitmq"] != "ok"


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_readiness_probes_wait_out_both_checks_of_readyz(overlay: str) -> None:
    # /readyz runs the database and the broker check one after the other, each bounded by
    # DEPENDENCY_TIMEOUT_SECONDS: a probe that gives up sooner would fail while the broker hangs.
    bound = ServiceSettings.model_fields["dependency_timeout_seconds"].default
    resources = kube.build(overlay)
    for service in SERVICES:
        probe = container(resources, "Deployment", service)["readinessProbe"]
        assert probe["httpGet"] == {"path": "/readyz", "port": "http"}
        assert probe["timeoutSeconds"] > 2 * bound, service
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 30, "a blip must not empty the Service"


# 2. Production needs MAIL_FROM and PUBLIC_URL ------------------------------------------------------


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_the_configmap_carries_mail_from_and_public_url(overlay: str) -> None:
    config = kube.config_map(kube.build(overlay), "taskflow-config")
    assert config["PUBLIC_URL"].startswith("https://")
    assert re.fullmatch(r".*<[^@<>\s]+@[^@<>\s]+\.[a-z]+>", config["MAIL_FROM"])


def test_compose_requires_mail_from_and_public_url_from_the_env_file() -> None:
    used = compose.interpolations()
    assert used["MAIL_FROM"] == {":?"} and used["PUBLIC_URL"] == {":?"}
    services = compose.load()["services"]
    assert compose.variable(services["notify"]["environment"]["MAIL_FROM"]) == "MAIL_FROM"
    assert compose.variable(services["auth"]["environment"]["PUBLIC_URL"]) == "PUBLIC_URL"


def test_the_operator_readme_says_to_set_both() -> None:
    text = K8S_README.read_text()
    assert "`MAIL_FROM`" in text and "`PUBLIC_URL`" in text


def test_the_readmes_admin_secret_is_one_auth_accepts_in_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Secret taskflow-admin created exactly as k8s/README.md writes it (the shell expanding its
    arguments), read into the variables the auth Deployment takes from it, passes auth's production
    settings: copied as written, it must not keep auth from starting."""
    text = K8S_README.read_text().replace("\\\n", " ")
    arguments = re.search(r"kubectl -n taskflow create secret generic taskflow-admin (.*)", text).group(1)
    expanded = subprocess.run(["bash", "-c", f"printf '%s\\0' {arguments}"], capture_output=True, text=True, check=True)
    secret = dict(re.fullmatch(r"--from-literal=([\w.-]+)=(.+)", word, re.DOTALL).groups()
                  for word in expanded.stdout.split("\0")[:-1])
    from_secret = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]["key"]
        for variable in kube.env(kube.one(kube.build("prod"), "Deployment", "auth"))
        if variable.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "taskflow-admin"
    }
    assert sorted(from_secret.values()) == sorted(secret)
    jwt_key, link_key = tmp_path / "jwt.pem", tmp_path / "email-link.key"
    jwt_key.write_text("only needs to exist for the settings' checks")
    link_key.write_text(os.urandom(32).hex())
    for name, value in {
        "TASKFLOW_ENV": "production", "RABBITMQ_URL": "amqp://auth:secret@rabbitmq:5672/%2F",
        "JWT_PRIVATE_KEY_FILE": str(jwt_key), "EMAIL_LINK_KEY_FILE": str(link_key),
        "PUBLIC_URL": "https://taskflow.example.org",
        **{variable: secret[key] for variable, key in from_secret.items()},
    }.items():
        monkeypatch.setenv(name, value)
    settings = AuthSettings.load()
    assert settings.admin_email == secret["email"]


# 3. No labels on claim templates; one kustomize version ------------------------------------------


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_claim_templates_carry_no_labels_and_every_pod_is_part_of_taskflow(overlay: str) -> None:
    resources = kube.build(overlay)
    for statefulset in kube.find(resources, "StatefulSet"):
        for claim in statefulset["spec"].get("volumeClaimTemplates", []):
            assert "labels" not in claim["metadata"], statefulset["metadata"]["name"]
    for workload in kube.workloads(resources):
        labels = kube.pod_template(workload)["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "taskflow", workload["metadata"]["name"]


def test_no_kustomization_uses_a_label_option_whose_reach_differs_between_kustomize_versions() -> None:
    for path in ROOT.glob("k8s/**/kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        assert "commonLabels" not in kustomization, path
        for entry in kustomization.get("labels", []):
            assert not entry.get("includeTemplates") and not entry.get("includeSelectors"), path


def test_the_tests_run_the_kustomize_version_scripts_env_pins_and_the_readmes_name_it() -> None:
    pinned = env_sh("KUSTOMIZE_VERSION")
    built = subprocess.run(["go", "version", "-m", tool("kustomize")], capture_output=True, text=True, check=True)
    assert f"\tmod\tsigs.k8s.io/kustomize/kustomize/v5\t{pinned}\t" in built.stdout
    for readme in (K8S_README, README):
        text = readme.read_text()
        assert f"kustomize {pinned}" in text, readme
        assert "kubectl apply -k" not in text, f"{readme}: kubectl's embedded kustomize is another version"


# 4. RabbitMQ: ready within a formed cluster, membership repaired -------------------------------------


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_a_rabbitmq_node_is_ready_only_within_a_cluster_of_a_majority(overlay: str) -> None:
    resources = kube.build(overlay)
    statefulset = kube.one(resources, "StatefulSet", "rabbitmq")
    rabbitmq = container(resources, "StatefulSet", "rabbitmq")
    script = rabbitmq["readinessProbe"]["exec"]["command"][-1]
    assert "check_port_connectivity" in script
    assert 'await_online_nodes "$CLUSTER_QUORUM"' in script
    assert int(kube.env_value(rabbitmq["env"], "CLUSTER_QUORUM")) == statefulset["spec"]["replicas"] // 2 + 1
    # Nodes start together and find each other before they are ready, or none would ever be.
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert kube.one(resources, "Service", statefulset["spec"]["serviceName"])["spec"]["publishNotReadyAddresses"]


@pytest.mark.parametrize(("quorum", "ready"), [(1, True), (2, False)])
def test_the_readiness_command_passes_only_when_the_node_sees_its_quorum_running(
    infra: Infra, quorum: int, ready: bool
) -> None:
    # The probe's own command against a real (single, Debian) RabbitMQ node: alone, it is a
    # cluster of one; asked for two, it is not ready, and says so within the probe's timeout.
    rabbitmq = container(kube.build("prod"), "StatefulSet", "rabbitmq")
    probe = rabbitmq["readinessProbe"]
    env = {
        **infra.env,
        "RABBITMQ_NODENAME": infra.node,
        "CLUSTER_QUORUM": str(quorum),
        "PATH": f"{infra.env.get('TASKFLOW_RABBITMQ_BIN', '/usr/lib/rabbitmq/bin')}:{os.environ['PATH']}",
    }
    started = time.monotonic()
    result = subprocess.run(probe["exec"]["command"], env=env, capture_output=True, text=True, check=False,
                            timeout=probe["timeoutSeconds"] * 2)
    assert (result.returncode == 0) is ready, result.stdout + result.stderr
    assert time.monotonic() - started < probe["timeoutSeconds"]


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_rabbitmq_repairs_quorum_queue_membership(overlay: str) -> None:
    built = kube.build(overlay)
    config = kube.config_map(built, "rabbitmq-config")["rabbitmq.conf"]
    assert re.search(r"^quorum_queue\.continuous_membership_reconciliation\.enabled = true$", config, re.MULTILINE)
    # Without a target size RabbitMQ 3.13 adds no member: it must be the cluster's size.
    target = re.search(r"^quorum_queue\.continuous_membership_reconciliation\.target_group_size = (\d+)$", config, re.MULTILINE)
    assert target and int(target.group(1)) == kube.one(built, "StatefulSet", "rabbitmq")["spec"]["replicas"]


# 5. Our images from a configurable registry, by digest in prod ---------------------------------------


def our_images(resources: list) -> dict[str, str]:
    """Workload/container → image, for TaskFlow's own images."""
    return {
        f"{workload['metadata']['name']}/{c['name']}": c["image"]
        for workload in kube.workloads(resources)
        for c in kube.containers(kube.pod_template(workload))
        if re.search(r"(^|/)taskflow/(" + "|".join(OUR_IMAGES) + r")([:@]|$)", c["image"])
    }


def test_prod_pulls_every_image_of_ours_from_the_overlays_registry_by_digest() -> None:
    kustomization = yaml.safe_load((ROOT / "k8s" / "overlays" / "prod" / "kustomization.yaml").read_text())
    entries = {entry["name"]: entry for entry in kustomization["images"]}
    assert set(entries) == {f"taskflow/{name}" for name in OUR_IMAGES}
    images = our_images(kube.build("prod"))
    assert len(images) >= 9
    for where, image in images.items():
        name, _, digest = image.partition("@")
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), where
        assert name in {entry["newName"] for entry in entries.values()}, where
        assert not name.startswith("taskflow/"), f"{where}: Docker Hub's taskflow namespace is not ours"


def test_dev_pulls_no_image_of_ours_from_a_registry_that_could_serve_someone_elses() -> None:
    images = our_images(kube.build("dev"))
    assert len(images) >= 9
    for where, image in images.items():
        assert image.startswith("registry.invalid/taskflow/") and image.endswith(":local"), where
    assert "kind load docker-image registry.invalid/taskflow/$name:local" in K8S_README.read_text()


def test_the_operator_readme_shows_how_to_set_registry_and_digest() -> None:
    assert re.search(r"kustomize edit set image taskflow/auth=\S+@sha256:", K8S_README.read_text())


# 6. The autoscaler alone owns the replicas it scales -------------------------------------------------


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_no_autoscaled_workload_states_replicas(overlay: str) -> None:
    resources = kube.build(overlay)
    for hpa in kube.find(resources, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert "replicas" not in kube.one(resources, target["kind"], target["name"])["spec"], target["name"]


def test_prod_autoscalers_keep_at_least_three() -> None:
    for hpa in kube.find(kube.build("prod"), "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] > 3


# 7. Drains and keep-alive ----------------------------------------------------------------------------


def gunicorn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """The gunicorn settings every service's image runs with."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return gunicorn_settings(service="tasks", app="taskflow_tasks:create_app()", default_port=5002)


def test_kong_drops_idle_upstream_connections_before_gunicorn_closes_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keepalive = gunicorn(monkeypatch, tmp_path)["keepalive"]
    kong_compose = compose.load()["services"]["gateway"]["environment"]
    assert 0 < int(kong_compose["KONG_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT"]) < keepalive
    for overlay in kube.OVERLAYS:
        kong = container(kube.build(overlay), "Deployment", "gateway")
        assert 0 < int(kube.env_value(kong["env"], "KONG_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT")) < keepalive


def sleep_seconds(pod_container: dict) -> int:
    command = pod_container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_services_and_web_keep_serving_until_their_endpoints_are_gone_then_drain_within_the_grace_period(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    graceful = gunicorn(monkeypatch, tmp_path)["graceful_timeout"]
    resources = kube.build(overlay)
    for name in SERVICES:
        spec = kube.pod_template(kube.one(resources, "Deployment", name))["spec"]
        pause = sleep_seconds(spec["containers"][0])
        assert pause >= 5, name
        assert spec["terminationGracePeriodSeconds"] >= pause + graceful, name
    web = kube.pod_template(kube.one(resources, "Deployment", "web"))["spec"]
    assert sleep_seconds(web["containers"][0]) >= 5
    assert web.get("terminationGracePeriodSeconds", 30) > sleep_seconds(web["containers"][0])


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_kong_waits_then_quits_gracefully_within_its_grace_period(overlay: str) -> None:
    spec = kube.pod_template(kube.one(kube.build(overlay), "Deployment", "gateway"))["spec"]
    command = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["kong", "quit"]
    options = dict(option.removeprefix("--").split("=") for option in command[2:])
    assert int(options["wait"]) >= 5
    assert spec["terminationGracePeriodSeconds"] > int(options["wait"]) + int(options["timeout"])


def test_the_operator_readme_states_the_keep_alive_rule() -> None:
    text = " ".join(K8S_README.read_text().split())
    assert "shorter on the client side than on the server side" in text
