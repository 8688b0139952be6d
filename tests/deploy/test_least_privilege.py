"""Issue 17 §8: in Compose and in Kubernetes every service reaches only what it owns. MongoDB
enforces authentication (the replica set's members share a key file) and each service signs in as
its own user, which may read and write its own database only; root creates the users and nothing
else uses it."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from . import access, compose, kube
from .repo import SERVICES

APPS = [(service, name) for service in SERVICES for name in (service, f"{service}-worker")]
MONGO_USERS_JOB = ("mongo-init", "users")


def test_compose_mongodb_enforces_authentication_with_a_root_user_from_the_env_file() -> None:
    services = compose.load()["services"]
    mongo = services["mongo"]
    assert "--keyFile" in mongo["command"], "a replica set enforces authentication only with a key file"
    assert mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"] == "root"
    assert access.compose_variable(mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"]) == "MONGODB_ROOT_PASSWORD"
    assert compose.interpolations()["MONGODB_ROOT_PASSWORD"] == {":?"}
    assert "auth('root', process.env.MONGO_INITDB_ROOT_PASSWORD)" in mongo["healthcheck"]["test"][-1]


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_kubernetes_mongodb_members_authenticate_with_the_secret_key_file(overlay: str) -> None:
    statefulset = kube.one(kube.build(overlay), "StatefulSet", "mongo")
    template = kube.pod_template(statefulset)
    mongod = template["spec"]["containers"][0]
    key_file = mongod["args"][mongod["args"].index("--keyFile") + 1]
    mount = next(m for m in mongod["volumeMounts"] if m["name"] == "keyfile")
    assert f"install -m 0400 {mount['mountPath']}/keyfile {key_file}" in mongod["command"][-2]
    assert mongod["command"][-2].rstrip().endswith('exec docker-entrypoint.sh "$@"')
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "keyfile")
    assert volume["secret"]["secretName"] == "taskflow-mongo"
    assert volume["secret"]["items"] == [{"key": "keyfile", "path": "keyfile"}]
    env = mongod["env"]
    assert access.value(env, "MONGO_INITDB_ROOT_USERNAME") == "root"
    assert access.secret_key(env, "MONGO_INITDB_ROOT_PASSWORD") == ("taskflow-mongo", "root-password")


@pytest.mark.parametrize(("service", "name"), APPS)
def test_compose_service_signs_in_to_mongodb_as_its_own_user(service: str, name: str) -> None:
    services = compose.load()["services"]
    uri = access.compose_url(services[name]["environment"]["MONGODB_URI"])
    assert (uri.username, uri.password) == (service, f"${{MONGODB_{service.upper()}_PASSWORD}}")
    assert parse_qs(uri.query)["authSource"] == ["admin"]
    assert compose.interpolations()[f"MONGODB_{service.upper()}_PASSWORD"] == {":?"}
    init = services["mongo-init"]["environment"]
    assert access.compose_variable(init[f"MONGODB_{service.upper()}_PASSWORD"]) == f"MONGODB_{service.upper()}_PASSWORD"


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
@pytest.mark.parametrize(("service", "name"), APPS)
def test_kubernetes_service_signs_in_to_mongodb_as_its_own_user(overlay: str, service: str, name: str) -> None:
    resources = kube.build(overlay)
    env = access.container_env(kube.one(resources, "Deployment", name))
    assert access.value(env, "MONGODB_URI") == f"mongodb://{service}:$(MONGODB_PASSWORD)@$(MONGODB_ADDRESS)"
    assert access.secret_key(env, "MONGODB_PASSWORD") == ("taskflow-mongo", f"{service}-password")
    assert access.defined_before(env, "MONGODB_PASSWORD", "MONGODB_URI")
    address = kube.config_map(resources, "taskflow-config")["MONGODB_ADDRESS"]
    assert "@" not in address and parse_qs(address.split("?", 1)[1])["authSource"] == ["admin"]
    job_env = access.container_env(kube.one(resources, "Job", MONGO_USERS_JOB[0]), MONGO_USERS_JOB[1])
    assert access.secret_key(job_env, f"MONGODB_{service.upper()}_PASSWORD") == ("taskflow-mongo", f"{service}-password")


def test_each_service_user_may_read_and_write_its_own_database_only() -> None:
    prefix = compose.load()["x-environment"]["MONGODB_DB_PREFIX"]
    assert kube.config_map(kube.build("prod"), "taskflow-config")["MONGODB_DB_PREFIX"] == prefix
    roles = access.mongo_roles()
    for service in SERVICES:
        assert roles[service] == [{"role": "readWrite", "db": f"{prefix}{service}"}], service
    assert roles["backup"] == [{"role": "backup", "db": "admin"}], "the backup reads; it cannot write"
    assert set(roles) == {*SERVICES, "backup"}


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_the_users_created_are_the_services_and_the_backup(overlay: str) -> None:
    assert compose.load()["services"]["mongo-init"]["environment"]["MONGODB_USERS"].split() == list(SERVICES)
    job = kube.one(kube.build(overlay), "Job", MONGO_USERS_JOB[0])
    env = access.container_env(job, MONGO_USERS_JOB[1])
    assert access.value(env, "MONGODB_USERS").split() == [*SERVICES, "backup"]
    assert access.secret_key(env, "MONGODB_BACKUP_PASSWORD") == ("taskflow-mongo", "backup-password")
    users = next(c for c in kube.pod_template(job)["spec"]["containers"] if c["name"] == MONGO_USERS_JOB[1])
    assert users["command"][-1] == "/taskflow/mongo/create-users.js"


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_the_backup_signs_in_as_the_backup_user(overlay: str) -> None:
    env = access.container_env(kube.one(kube.build(overlay), "CronJob", "mongo-backup"))
    assert access.value(env, "MONGODB_URI") == "mongodb://backup:$(MONGODB_PASSWORD)@$(MONGODB_ADDRESS)"
    assert access.secret_key(env, "MONGODB_PASSWORD") == ("taskflow-mongo", "backup-password")
    assert access.defined_before(env, "MONGODB_ADDRESS", "MONGODB_URI")


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_only_mongodb_and_the_user_job_know_the_root_password(overlay: str) -> None:
    holders = {
        workload["metadata"]["name"]
        for workload in kube.workloads(kube.build(overlay))
        for container in kube.containers(kube.pod_template(workload))
        for variable in container.get("env", [])
        if variable.get("valueFrom", {}).get("secretKeyRef") == {"name": "taskflow-mongo", "key": "root-password"}
    }
    assert holders == {"mongo", "mongo-init"}
    in_compose = {
        name for name, service in compose.load()["services"].items() if "MONGODB_ROOT_PASSWORD" in str(service)
    }
    assert in_compose == {"mongo", "mongo-init"}
