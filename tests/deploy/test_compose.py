"""docker-compose.yml (`make up`) is a valid Compose file that runs every service and worker from
its image, starts each one only after what it needs is healthy, and keeps secrets out of git."""

from __future__ import annotations

import subprocess
from urllib.parse import parse_qs

import pytest

from . import compose, dockerfiles
from .repo import ROOT, SERVICES, design_ports, tool

SECRET_VARIABLES = {
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "MONGODB_ROOT_PASSWORD",
    "RABBITMQ_OPERATOR_PASSWORD",
    *(f"{store}_{service.upper()}_PASSWORD" for store in ("MONGODB", "RABBITMQ") for service in SERVICES),
}


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose.PATH)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_service_and_its_worker_run_from_the_service_image(service: str) -> None:
    services = compose.load()["services"]
    web, worker = services[service], services[f"{service}-worker"]
    assert web["build"] == {"context": ".", "dockerfile": f"services/{service}/Dockerfile"}
    assert worker["build"] == web["build"]
    assert worker["image"] == web["image"]
    assert "entrypoint" not in web, "the image's entrypoint is gunicorn"
    assert worker["entrypoint"] == ["python", "-m", f"taskflow_{service}.worker"]
    assert web["expose"] == [str(design_ports()[service])]
    assert web["environment"]["OTEL_SERVICE_NAME"] == worker["environment"]["OTEL_SERVICE_NAME"] == service


def test_every_dependency_waited_for_as_healthy_has_a_healthcheck() -> None:
    services = compose.load()["services"]

    def has_healthcheck(name: str) -> bool:
        if "healthcheck" in services[name]:
            return True
        dockerfile = ROOT / services[name].get("build", {}).get("dockerfile", "-")
        return dockerfile.is_file() and bool(dockerfiles.stages(dockerfile.parent.name)[-1].all("HEALTHCHECK"))

    def waited_for(condition: str) -> set[str]:
        return {
            target
            for service in services.values()
            for target, depended in service.get("depends_on", {}).items()
            if depended["condition"] == condition
        }

    assert waited_for("service_healthy") >= {"mongo", "rabbitmq", "mailpit", *SERVICES}
    assert [name for name in waited_for("service_healthy") if not has_healthcheck(name)] == []
    one_shot = waited_for("service_completed_successfully")
    assert one_shot == {"mongo-init"}
    assert all("restart" not in services[name] for name in one_shot), "a one-shot job runs once per `make up`"
    # Jaeger's image has nothing to run a check with; everything else but one-shot jobs reports its health.
    assert [name for name in services if not has_healthcheck(name) and name not in one_shot] == ["jaeger"]


def test_gateway_is_kong_db_less_on_kong_yml_without_an_admin_api() -> None:
    gateway = compose.load()["services"]["gateway"]
    assert gateway["image"].startswith("kong:3.")
    env = gateway["environment"]
    assert env["KONG_DATABASE"] == "off"
    assert env["KONG_ADMIN_LISTEN"] == "off"
    assert f"./gateway/kong.yml:{env['KONG_DECLARATIVE_CONFIG']}:ro" in gateway["volumes"]
    gateway_port, tls_port = design_ports()["gateway"], design_ports()["gateway tls"]
    assert env["KONG_PROXY_LISTEN"] == f"0.0.0.0:{gateway_port}, 0.0.0.0:{tls_port} http2 ssl"
    assert gateway["ports"] == [f"${{GATEWAY_PORT:-{gateway_port}}}:{gateway_port}",
                                f"${{GATEWAY_TLS_PORT:-{tls_port}}}:{tls_port}"]
    assert env["KONG_NGINX_PROXY_GZIP"] == "on" and env["KONG_NGINX_PROXY_GZIP_MIN_LENGTH"] == "1024"
    assert env["KONG_TRACING_INSTRUMENTATIONS"] == "all"
    assert 0 < float(env["KONG_TRACING_SAMPLING_RATE"]) <= 1


def test_only_the_gateway_is_reachable_from_other_hosts() -> None:
    services = compose.load()["services"]
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(published) == {"gateway", "rabbitmq", "jaeger", "mailpit"}
    assert all(
        port.startswith("127.0.0.1:") for name, ports in published.items() if name != "gateway" for port in ports
    )
    assert [name for name in (*SERVICES, *(f"{s}-worker" for s in SERVICES)) if "ports" in services[name]] == []


def test_secrets_are_required_from_the_env_file_that_git_ignores() -> None:
    used = compose.interpolations()
    for name in SECRET_VARIABLES:
        assert used[name] == {":?"}, f"{name} must be required, never defaulted"
    assert [name for name, operators in used.items() if "" in operators] == [], (
        "every variable needs a default or a requirement"
    )
    assert set(compose.env_example()) == set(used), "the example lists exactly the variables compose reads"
    secret_file = compose.load()["secrets"]["jwt-private-key"]["file"]
    ignored = subprocess.run(
        ["git", "check-ignore", "deploy/compose.env", secret_file], cwd=ROOT, capture_output=True, text=True
    )
    assert ignored.stdout.split() == ["deploy/compose.env", secret_file]


def test_auth_alone_gets_the_signing_key_and_the_admin_account() -> None:
    services = compose.load()["services"]
    holders = {name for name, service in services.items() if "jwt-private-key" in service.get("secrets", [])}
    assert holders == {"auth", "auth-worker"}
    assert services["auth"]["environment"]["JWT_PRIVATE_KEY_FILE"] == "/run/secrets/jwt-private-key"
    with_admin_password = {
        name for name, service in services.items() if "ADMIN_PASSWORD" in service.get("environment", {})
    }
    assert with_admin_password == {"auth", "auth-worker"}


@pytest.mark.parametrize("name", [*SERVICES, *(f"{service}-worker" for service in SERVICES)])
def test_app_containers_have_a_read_only_root_and_a_private_tmp(name: str) -> None:
    service = compose.load()["services"][name]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]


def test_mongodb_runs_as_the_replica_set_the_services_connect_to() -> None:
    services = compose.load()["services"]
    mongo = services["mongo"]
    assert mongo["image"].startswith("mongo:7.")
    assert mongo["command"][mongo["command"].index("--replSet") + 1] == "rs0"
    script = mongo["healthcheck"]["test"][-1]
    assert "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'mongo:27017'}]})" in script
    assert "isWritablePrimary" in script
    for service in SERVICES:
        uri = compose.url(services[service]["environment"]["MONGODB_URI"])
        assert (uri.hostname, uri.port, parse_qs(uri.query)["replicaSet"]) == ("mongo", 27017, ["rs0"])


def test_rabbitmq_is_313_with_the_management_plugin() -> None:
    rabbitmq = compose.load()["services"]["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3.13.") and rabbitmq["image"].endswith("-management")
    assert rabbitmq["user"] == "rabbitmq", "the definitions it renders must be readable by the broker"
