"""Issue 17 §8: in Compose and in Kubernetes every service reaches only what it owns. MongoDB
enforces authentication (the replica set's members share a key file) and each service signs in as
its own user, which may read and write its own database only; root creates the users and nothing
else uses it. RabbitMQ has one user per service, limited to its own queues (with their retry and
parking queues) and the exchange taskflow.events; only the operator is an administrator, and no
service signs in as the operator or as guest."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from taskflow_common.events import subscribers
from taskflow_common.events.envelope import EXCHANGE

from . import access, compose, kube
from .repo import SERVICES

APPS = [(service, name) for service in SERVICES for name in (service, f"{service}-worker")]
MONGO_USERS_JOB = ("mongo-init", "users")


def test_compose_mongodb_enforces_authentication_with_a_root_user_from_the_env_file() -> None:
    services = compose.load()["services"]
    mongo = services["mongo"]
    assert "--keyFile" in mongo["command"], "a replica set enforces authentication only with a key file"
    assert mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"] == "root"
    assert compose.variable(mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"]) == "MONGODB_ROOT_PASSWORD"
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
    assert kube.env_value(env, "MONGO_INITDB_ROOT_USERNAME") == "root"
    assert kube.env_secret(env, "MONGO_INITDB_ROOT_PASSWORD") == ("taskflow-mongo", "root-password")


@pytest.mark.parametrize(("service", "name"), APPS)
def test_compose_service_signs_in_to_mongodb_as_its_own_user(service: str, name: str) -> None:
    services = compose.load()["services"]
    uri = compose.url(services[name]["environment"]["MONGODB_URI"])
    assert (uri.username, uri.password) == (service, f"${{MONGODB_{service.upper()}_PASSWORD}}")
    assert parse_qs(uri.query)["authSource"] == ["admin"]
    assert compose.interpolations()[f"MONGODB_{service.upper()}_PASSWORD"] == {":?"}
    init = services["mongo-init"]["environment"]
    assert compose.variable(init[f"MONGODB_{service.upper()}_PASSWORD"]) == f"MONGODB_{service.upper()}_PASSWORD"


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
@pytest.mark.parametrize(("service", "name"), APPS)
def test_kubernetes_service_signs_in_to_mongodb_as_its_own_user(overlay: str, service: str, name: str) -> None:
    resources = kube.build(overlay)
    env = kube.env(kube.one(resources, "Deployment", name))
    assert kube.env_value(env, "MONGODB_URI") == f"mongodb://{service}:$(MONGODB_PASSWORD)@$(MONGODB_ADDRESS)"
    assert kube.env_secret(env, "MONGODB_PASSWORD") == ("taskflow-mongo", f"{service}-password")
    assert kube.defined_before(env, "MONGODB_PASSWORD", "MONGODB_URI")
    address = kube.config_map(resources, "taskflow-config")["MONGODB_ADDRESS"]
    assert "@" not in address and parse_qs(address.split("?", 1)[1])["authSource"] == ["admin"]
    job_env = kube.env(kube.one(resources, "Job", MONGO_USERS_JOB[0]), MONGO_USERS_JOB[1])
    password = ("taskflow-mongo", f"{service}-password")
    assert kube.env_secret(job_env, f"MONGODB_{service.upper()}_PASSWORD") == password


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
    env = kube.env(job, MONGO_USERS_JOB[1])
    assert kube.env_value(env, "MONGODB_USERS").split() == [*SERVICES, "backup"]
    assert kube.env_secret(env, "MONGODB_BACKUP_PASSWORD") == ("taskflow-mongo", "backup-password")
    users = next(c for c in kube.pod_template(job)["spec"]["containers"] if c["name"] == MONGO_USERS_JOB[1])
    assert users["command"][-1] == "/taskflow/mongo/create-users.js"


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_the_backup_signs_in_as_the_backup_user(overlay: str) -> None:
    env = kube.env(kube.one(kube.build(overlay), "CronJob", "mongo-backup"), "mongodump")
    assert kube.env_value(env, "MONGODB_URI") == "mongodb://backup:$(MONGODB_PASSWORD)@$(MONGODB_ADDRESS)"
    assert kube.env_secret(env, "MONGODB_PASSWORD") == ("taskflow-mongo", "backup-password")
    assert kube.defined_before(env, "MONGODB_ADDRESS", "MONGODB_URI")


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_only_mongodb_and_the_user_job_know_the_root_password(overlay: str) -> None:
    assert kube.secret_readers(kube.build(overlay), "taskflow-mongo", "root-password") == {"mongo", "mongo-init"}
    in_compose = {
        name for name, service in compose.load()["services"].items() if "MONGODB_ROOT_PASSWORD" in str(service)
    }
    assert in_compose == {"mongo", "mongo-init"}


# RabbitMQ -----------------------------------------------------------------------------------------

# Every queue each service consumes (DESIGN §5: `<service>.<purpose>`), from the catalog's subscribers.
QUEUES = {
    service: [subscription for subscription in subscribers.CATALOG if subscription.queue.startswith(f"{service}.")]
    for service in SERVICES
}
BROKER_DEFINITIONS = "/etc/rabbitmq/definitions/definitions.json"


def queue_names(service: str) -> list[str]:
    """The consumer queues of ``service`` with their parking and retry queues, plus one a future
    consumer might declare."""
    return [f"{service}.future-purpose"] + [
        name
        for subscription in QUEUES[service]
        for name in (
            subscription.queue,
            subscription.dead_letter_queue,
            *(subscription.retry_queue(attempt) for attempt in range(1, subscription.max_attempts)),
        )
    ]


def test_the_broker_has_one_user_per_service_without_tags_an_operator_and_no_guest() -> None:
    users = {user["name"]: user for user in access.broker_definitions()["users"]}
    assert set(users) == {*SERVICES, "operator"}
    for service in SERVICES:
        assert users[service]["tags"] == [], f"{service} needs no management access"
        assert users[service]["password"] == f"${{RABBITMQ_{service.upper()}_PASSWORD}}"
    assert users["operator"]["tags"] == ["administrator"]
    assert users["operator"]["password"] == "${RABBITMQ_OPERATOR_PASSWORD}"
    exchanges = access.broker_definitions()["exchanges"]
    own = [(f"{service}.queues", "direct", True) for service in ("tasks", "admin", "notify")]
    assert sorted((e["name"], e["type"], e["durable"]) for e in exchanges) == sorted([(EXCHANGE, "topic", True), *own])


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_consume_and_retry_its_own_queues_and_use_the_events_exchange(service: str) -> None:
    configure, write, read = access.broker_permissions(service).values()
    for queue in [*queue_names(service), f"{service}.queues"]:
        # consume and fetch parked messages (read); republish through its own queues exchange to a
        # retry or parking queue (write); declare or delete: none of them (the definitions declare
        # them; a service that deleted one would keep every worker waiting for it at start-up)
        assert not access.broker_grants(configure, queue), queue
        assert access.broker_grants(write, queue), queue
        assert access.broker_grants(read, queue), queue
    # publish to it: the services that own events; declare, delete or retype it: none (the
    # definitions declare it; a service would otherwise delete and re-declare it as another type,
    # which topic permissions do not hold)
    assert access.broker_grants(write, EXCHANGE) == (service in PUBLISHED)
    assert not access.broker_grants(configure, EXCHANGE)
    for name in (f"{service}.new-queue", "amq.gen-x"):  # nothing new: a queue of its own, a server-named one
        assert not access.broker_grants(configure, name), name


# The family of event types each service publishes (DESIGN §5); admin publishes none.
PUBLISHED = {"auth": "user", "tasks": "task", "notify": "notification"}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_publish_to_the_events_exchange_only_its_own_types(service: str) -> None:
    """Topic permissions: the broker refuses a routing key of another family, so no account can
    pass its event off as another service's (the consumer checks the routing key is the type)."""
    (grant,) = [p for p in access.broker_definitions()["topic_permissions"] if p["user"] == service]
    assert (grant["vhost"], grant["exchange"]) == ("/", EXCHANGE)
    write = re.compile(grant["write"])
    for family in PUBLISHED.values():
        for key in (f"{family}.created", f"{family}.deactivated"):
            assert access.broker_grants(write, key) == (family == PUBLISHED.get(service)), key
    if service in PUBLISHED:
        assert not access.broker_grants(write, f"x{PUBLISHED[service]}.created")


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_bind_nothing_to_the_events_exchange(service: str) -> None:
    """Topic permissions' read is checked on bindings: a service that could bind a queue of its
    own (a parking queue nobody consumes) to another family's events would read them all and could
    fill it; one bound with ``x-overflow: reject-publish`` made every publish of that family fail.
    The definitions bind every queue; no account needs to."""
    (grant,) = [p for p in access.broker_definitions()["topic_permissions"] if p["user"] == service]
    read = re.compile(grant["read"])
    keys = {key for subscription in subscribers.CATALOG for key in subscription.bindings}
    for key in [*keys, "#", "user.#", "task.*"]:
        assert not access.broker_grants(read, key), key


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_touch_no_other_services_queue_and_no_other_exchange(service: str) -> None:
    permissions = access.broker_permissions(service)
    others = [queue for other in SERVICES if other != service for queue in [*queue_names(other), f"{other}.queues"]]
    foreign_exchanges = ["amq.topic", "amq.direct", "amq.fanout", "amq.headers", "amq.rabbitmq.trace", f"{EXCHANGE}x"]
    for kind, pattern in permissions.items():
        for resource in [*others, *foreign_exchanges, "another-queue", f"x{service}.inbox"]:
            assert not access.broker_grants(pattern, resource), (kind, resource)
    for kind in ("configure", "write", "read"):  # the default exchange reaches every queue
        assert not access.broker_grants(permissions[kind], "amq.default"), kind


def test_only_the_operator_is_an_administrator_with_every_permission() -> None:
    permissions = {p["user"]: p for p in access.broker_definitions()["permissions"]}
    assert set(permissions) == {*SERVICES, "operator"}
    operator = {kind: permissions["operator"][kind] for kind in access.PERMISSIONS}
    assert operator == dict.fromkeys(access.PERMISSIONS, ".*")


@pytest.mark.parametrize(("service", "name"), APPS)
def test_compose_service_signs_in_to_the_broker_as_its_own_user(service: str, name: str) -> None:
    services = compose.load()["services"]
    url = compose.url(services[name]["environment"]["RABBITMQ_URL"])
    assert (url.username, url.password) == (service, f"${{RABBITMQ_{service.upper()}_PASSWORD}}")
    assert (url.hostname, url.port, url.path) == ("rabbitmq", 5672, "/%2F")
    variable = f"RABBITMQ_{service.upper()}_PASSWORD"
    assert compose.variable(services["rabbitmq"]["environment"][variable]) == variable


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
@pytest.mark.parametrize(("service", "name"), APPS)
def test_kubernetes_service_signs_in_to_the_broker_as_its_own_user(overlay: str, service: str, name: str) -> None:
    resources = kube.build(overlay)
    env = kube.env(kube.one(resources, "Deployment", name))
    assert kube.env_value(env, "RABBITMQ_URL") == f"amqp://{service}:$(RABBITMQ_PASSWORD)@rabbitmq:5672/%2F"
    assert kube.env_secret(env, "RABBITMQ_PASSWORD") == ("taskflow-rabbitmq", f"{service}-password")
    assert kube.defined_before(env, "RABBITMQ_PASSWORD", "RABBITMQ_URL")
    broker_env = kube.env(kube.one(resources, "StatefulSet", "rabbitmq"), "definitions")
    assert kube.env_secret(broker_env, f"RABBITMQ_{service.upper()}_PASSWORD") == (
        "taskflow-rabbitmq",
        f"{service}-password",
    )


def test_compose_broker_imports_the_rendered_definitions_and_creates_no_default_user() -> None:
    rabbitmq = compose.load()["services"]["rabbitmq"]
    assert not {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} & set(rabbitmq["environment"])
    assert "./deploy/rabbitmq/definitions.conf:/etc/rabbitmq/conf.d/30-definitions.conf:ro" in rabbitmq["volumes"]
    script = rabbitmq["entrypoint"][-1]
    assert f"/taskflow/rabbitmq/definitions.json {BROKER_DEFINITIONS} && exec docker-entrypoint.sh" in script
    assert rabbitmq["tmpfs"] == [BROKER_DEFINITIONS.rsplit("/", 1)[0]]
    assert f"load_definitions = {BROKER_DEFINITIONS}" in (access.BROKER / "definitions.conf").read_text().splitlines()


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_kubernetes_broker_imports_the_rendered_definitions_and_creates_no_default_user(overlay: str) -> None:
    resources = kube.build(overlay)
    template = kube.pod_template(kube.one(resources, "StatefulSet", "rabbitmq"))
    (broker,) = template["spec"]["containers"]
    assert not {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} & {v["name"] for v in broker["env"]}
    render = next(c for c in template["spec"]["initContainers"] if c["name"] == "definitions")
    assert render["command"][-2:] == ["/taskflow/rabbitmq/definitions.json", BROKER_DEFINITIONS]
    mounts = {m["mountPath"]: m for m in broker["volumeMounts"]}
    assert mounts["/etc/rabbitmq/conf.d/30-definitions.conf"]["subPath"] == "definitions.conf"
    rendered = mounts[BROKER_DEFINITIONS.rsplit("/", 1)[0]]
    assert rendered["readOnly"] is True
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == rendered["name"])
    assert volume["emptyDir"]["medium"] == "Memory"
    definitions = kube.config_map(resources, "rabbitmq-definitions")
    assert definitions == {name: (access.BROKER / name).read_text() for name in definitions}
    assert set(definitions) == {"definitions.json", "render-definitions.sh", "definitions.conf"}


def render(passwords: dict[str, str], output: Path) -> subprocess.CompletedProcess[str]:
    """Run deploy/rabbitmq/render-definitions.sh with POSIX sh and only ``passwords`` set."""
    script = access.BROKER / "render-definitions.sh"
    return subprocess.run(
        ["sh", str(script), str(access.BROKER / "definitions.json"), str(output)],
        env={"PATH": os.environ["PATH"], **passwords},
        capture_output=True,
        text=True,
    )


def test_rendering_fills_in_every_password_for_its_owner_only(tmp_path: Path) -> None:
    passwords = {f"RABBITMQ_{user.upper()}_PASSWORD": f"{user}0secret" for user in (*SERVICES, "operator")}
    output = tmp_path / "definitions.json"
    result = render(passwords, output)
    assert result.returncode == 0, result.stderr
    users = {user["name"]: user["password"] for user in json.loads(output.read_text())["users"]}
    assert users == {user: f"{user}0secret" for user in (*SERVICES, "operator")}
    assert stat.S_IMODE(output.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("password", "refusal"),
    [(None, "RABBITMQ_TASKS_PASSWORD is not set"), ("", "letters and digits"), ("change-me", "letters and digits")],
)
def test_rendering_refuses_a_missing_or_url_unsafe_password(tmp_path: Path, password: str | None, refusal: str) -> None:
    passwords = {f"RABBITMQ_{user.upper()}_PASSWORD": "s3cret" for user in (*SERVICES, "operator")}
    del passwords["RABBITMQ_TASKS_PASSWORD"]
    if password is not None:
        passwords["RABBITMQ_TASKS_PASSWORD"] = password
    result = render(passwords, tmp_path / "definitions.json")
    assert result.returncode != 0 and refusal in result.stderr
    assert not (tmp_path / "definitions.json").exists()


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_no_service_uses_the_operator_or_guest_account(overlay: str) -> None:
    accounts = {"operator", "guest"}
    services = compose.load()["services"]
    for _, name in APPS:
        assert compose.url(services[name]["environment"]["RABBITMQ_URL"]).username not in accounts, name
        env = kube.env(kube.one(kube.build(overlay), "Deployment", name))
        assert kube.env_value(env, "RABBITMQ_URL").split("//", 1)[1].split(":", 1)[0] not in accounts, name
    assert kube.secret_readers(kube.build(overlay), "taskflow-rabbitmq", "operator-password") == {"rabbitmq"}
