"""Issue 22 §3: backups that leave the cluster and restore. The CronJob mongo-backup dumps, encrypts
and uploads to S3-compatible storage with credentials from a Secret and keeps a retention window;
the restore Job (k8s/restore, not in the overlays) fetches one back; an alert fires when no backup
succeeded for a night. The manifests are checked as rendered; their rclone steps run for real with
Debian's rclone against a local directory standing in for the bucket (S3 is outside this machine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from . import kube
from .repo import ROOT, tool
from .test_kubernetes import K8S_README, KUBERNETES_VERSIONS

RULES = ROOT / "deploy" / "observability" / "taskflow.rules.yml"
BACKUP_SECRET = "taskflow-backup"
DAY = 86400


@cache
def _restore_rendered() -> str:
    result = subprocess.run(
        [tool("kustomize"), "build", str(ROOT / "k8s" / "restore")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def restore_resources() -> list[dict[str, Any]]:
    """Every resource ``kustomize build k8s/restore`` prints (a fresh copy each call)."""
    return list(yaml.safe_load_all(_restore_rendered()))


def cronjob(overlay: str = "prod") -> dict[str, Any]:
    return kube.one(kube.build(overlay), "CronJob", "mongo-backup")


def restore_job() -> dict[str, Any]:
    return kube.one(restore_resources(), "Job", "mongo-restore")


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in kube.containers(kube.pod_template(workload)) if c["name"] == name]
    return found


def mount(spec: dict[str, Any], volume: str) -> dict[str, Any]:
    return next(m for m in spec["volumeMounts"] if m["name"] == volume)


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_backup_dumps_every_database_at_one_point_in_time_into_scratch_space_that_dies_with_the_pod(
    overlay: str,
) -> None:
    resources = kube.build(overlay)
    job = cronjob(overlay)
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    dump = container(job, "mongodump")
    assert dump in kube.pod_template(job)["spec"]["initContainers"], "the upload starts once the dump is complete"
    script = dump["command"][-1]
    assert "set -euo pipefail" in script
    assert re.search(r'mongodump --uri="\$MONGODB_URI" --oplog --gzip \\\s+--archive="/scratch/out/taskflow-', script)
    volumes = {v["name"]: v for v in kube.pod_template(job)["spec"]["volumes"]}
    assert mount(dump, "scratch")["mountPath"] == "/scratch"
    assert "ephemeral" in volumes["scratch"], "a generic ephemeral volume: created for the run, deleted after"
    assert not any("persistentVolumeClaim" in v for v in volumes.values())
    assert kube.find(resources, "PersistentVolumeClaim", "mongo-backup") == []


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_upload_encrypts_into_the_configured_bucket_with_credentials_and_keys_from_a_secret(overlay: str) -> None:
    resources = kube.build(overlay)
    upload = container(cronjob(overlay), "upload")
    assert upload["image"].startswith("rclone/rclone:")
    assert upload["envFrom"] == [{"configMapRef": {"name": "mongo-backup"}}]
    settings = kube.one(resources, "ConfigMap", "mongo-backup")["data"]
    assert settings["RCLONE_CONFIG_STORE_TYPE"] == "s3"
    assert {"BACKUP_BUCKET", "BACKUP_PREFIX", "BACKUP_KEEP_DAYS", "RCLONE_CONFIG_STORE_ENDPOINT"} <= set(settings)
    assert not [key for key in settings if re.search("KEY|SECRET|PASSWORD|TOKEN", key)], "credentials go in the Secret"
    env = upload["env"]
    assert kube.env_secret(env, "RCLONE_CONFIG_STORE_ACCESS_KEY_ID") == (BACKUP_SECRET, "access-key-id")
    assert kube.env_secret(env, "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY") == (BACKUP_SECRET, "secret-access-key")
    assert kube.env_secret(env, "CRYPT_PASSWORD") == (BACKUP_SECRET, "crypt-password")
    assert kube.env_secret(env, "CRYPT_SALT") == (BACKUP_SECRET, "crypt-salt")
    assert kube.env_value(env, "RCLONE_CONFIG_BACKUP_TYPE") == "crypt"
    assert kube.env_value(env, "RCLONE_CONFIG_BACKUP_REMOTE") == "store:$(BACKUP_BUCKET)/$(BACKUP_PREFIX)"
    script = upload["command"][-1]
    assert "set -eu" in script and "rclone copy /scratch/out backup:" in script
    assert "store:" not in script, "everything written goes through the encrypting remote"
    assert mount(upload, "scratch") == {"name": "scratch", "mountPath": "/scratch", "readOnly": True}


def test_the_restore_job_is_not_applied_with_the_overlays_and_validates_on_its_own() -> None:
    for overlay in kube.OVERLAYS:
        assert kube.find(kube.build(overlay), "Job", "mongo-restore") == []
    resources = restore_resources()
    assert [(r["kind"], r["metadata"]["name"]) for r in resources] == [("Job", "mongo-restore")]
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(restore_job(), version, strict=True)
    assert restore_job()["metadata"]["namespace"] == "taskflow"


def test_the_restore_job_meets_the_restricted_pod_security_standard_and_reaches_mongodb() -> None:
    job = restore_job()
    spec = kube.pod_template(job)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    for each in kube.containers(kube.pod_template(job)):
        assert each["securityContext"]["allowPrivilegeEscalation"] is False
        assert each["securityContext"]["readOnlyRootFilesystem"] is True
        assert each["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert set(each["resources"]) == {"requests", "limits"}
    prod = kube.build("prod")
    restore_pod = kube.pods(restore_resources())["mongo-restore"]
    assert kube.admits(prod, restore_pod, kube.pods(prod)["mongo"], 27017)


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_every_configmap_and_secret_the_restore_job_reads_exists_under_that_name_in_the_overlay(overlay: str) -> None:
    """The Job is built apart from the overlays, so kustomize never rewrites its references to the
    hashed names an overlay gives generated ConfigMaps: each one it names must exist as named."""
    built = kube.build(overlay)
    names = {(r["kind"], r["metadata"]["name"]) for r in built}
    for each in kube.containers(kube.pod_template(restore_job())):
        for source in each.get("envFrom", []):
            assert ("ConfigMap", source["configMapRef"]["name"]) in names, source
        for variable in each.get("env", []):
            reference = variable.get("valueFrom", {})
            if "configMapKeyRef" in reference:
                assert ("ConfigMap", reference["configMapKeyRef"]["name"]) in names, variable
    address = kube.env_value(container(restore_job(), "mongorestore")["env"], "MONGODB_ADDRESS")
    assert address.startswith("mongo-0.mongo:27017/?replicaSet=rs0&")  # a member of every overlay's set


def test_the_restore_job_reads_the_backups_through_the_same_remote_and_replays_one_as_root() -> None:
    upload, fetch = container(cronjob(), "upload"), container(restore_job(), "fetch")
    assert fetch["image"] == upload["image"] and fetch["envFrom"] == upload["envFrom"]
    without_choice = [v for v in fetch["env"] if v["name"] != "BACKUP_NAME"]
    assert without_choice == upload["env"]
    assert kube.env_value(fetch["env"], "BACKUP_NAME") == "latest"
    restore = container(restore_job(), "mongorestore")
    assert restore["image"] == container(cronjob(), "mongodump")["image"]
    assert kube.env_secret(restore["env"], "MONGODB_ROOT_PASSWORD") == ("taskflow-mongo", "root-password")
    assert kube.env_value(restore["env"], "MONGODB_URI") == "mongodb://root:$(MONGODB_ROOT_PASSWORD)@$(MONGODB_ADDRESS)"
    assert kube.defined_before(restore["env"], "MONGODB_ADDRESS", "MONGODB_URI")
    assert (
        'mongorestore --uri="$MONGODB_URI" --gzip --archive=/scratch/taskflow.archive.gz --oplogReplay --drop'
        in restore["command"][-1]
    )
    assert mount(restore, "scratch")["readOnly"] is True


def test_the_restore_jobs_secrets_are_documented_with_their_keys() -> None:
    text = K8S_README.read_text().replace("\\\n", " ")
    command = re.search(rf"kubectl -n taskflow create secret generic {BACKUP_SECRET} .*", text).group(0)
    documented = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", command))
    assert kube.secret_references(restore_resources()) == {
        BACKUP_SECRET: documented,
        "taskflow-mongo": {"root-password"},
    }
    assert "kustomize build k8s/restore | kubectl create -f -" in K8S_README.read_text()


def backup_alert() -> dict[str, Any]:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    (alert,) = [rule for rule in rules if "kube_cronjob_status_last_successful_time" in rule["expr"]]
    return alert


def test_the_missed_backup_alert_watches_the_backup_cronjob_and_allows_one_period_of_its_schedule() -> None:
    alert = backup_alert()
    assert alert["alert"] == "TaskFlowBackupMissed" and alert["labels"]["severity"] == "page"
    job = cronjob()
    assert f'cronjob="{job["metadata"]["name"]}"' in alert["expr"]
    assert 'namespace="taskflow"' in alert["expr"]
    minute, hour, *every = job["spec"]["schedule"].split()
    assert every == ["*", "*", "*"] and minute.isdigit() and hour.isdigit(), "a daily schedule"
    thresholds = {int(a) * int(b) for a, b in re.findall(r"> (\d+) \* (\d+)", alert["expr"])}
    assert len(thresholds) == 1 and DAY < thresholds.pop() <= DAY + 4 * 3600


def test_an_alert_pages_when_the_backup_cronjobs_series_are_gone_and_the_missed_backup_alert_could_not_fire() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    job = cronjob()
    watched = f'absent(kube_cronjob_created{{namespace="taskflow", cronjob="{job["metadata"]["name"]}"}})'
    (alert,) = [rule for rule in rules if rule["expr"].strip() == watched]
    assert alert["labels"]["severity"] == backup_alert()["labels"]["severity"]
    assert "kube_cronjob_created" in backup_alert()["expr"], "the series whose absence silences it"


# The rclone steps of the manifests, run for real: Debian's rclone, a directory as the bucket.

SECRETS = {
    (BACKUP_SECRET, "access-key-id"): "unused-by-a-local-store",
    (BACKUP_SECRET, "secret-access-key"): "unused-by-a-local-store",
    (BACKUP_SECRET, "crypt-password"): "correct horse battery staple",
    (BACKUP_SECRET, "crypt-salt"): "a salt of its own",
}


def container_env(
    spec: dict[str, Any], config_maps: dict[str, dict[str, str]], secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    """The variables the kubelet gives ``spec``: its ConfigMaps whole, then its env in order,
    ``$(NAME)`` expanded from the variables before it."""
    variables: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        variables.update(config_maps[source["configMapRef"]["name"]])
    for variable in spec.get("env", []):
        if "value" in variable:
            value = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), variable["value"])
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            value = secrets[(ref["name"], ref["key"])]
        variables[variable["name"]] = value
    return variables


class Bucket:
    """A directory standing in for the bucket: the manifests' rclone steps run against it, with the
    S3 remote `store` swapped for a local one and the pod's volumes for directories."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "bucket"
        self.scratch = base / "scratch"
        (base / "tmp").mkdir()
        self.settings = dict(kube.one(kube.build("prod"), "ConfigMap", "mongo-backup")["data"])
        self.settings.update({"RCLONE_CONFIG_STORE_TYPE": "local", "BACKUP_BUCKET": str(self.root)})

    @property
    def objects(self) -> Path:
        return self.root / self.settings["BACKUP_PREFIX"]

    def run(self, workload: dict[str, Any], name: str, secrets: dict[tuple[str, str], str] = SECRETS,
            **env: str) -> subprocess.CompletedProcess[str]:
        spec = container(workload, name)
        script = spec["command"][-1].replace(mount(spec, "scratch")["mountPath"], str(self.scratch))
        variables = {**container_env(spec, {"mongo-backup": self.settings}, secrets), **env}
        variables["HOME"] = str(self.base / "tmp")
        environment = {"PATH": os.environ["PATH"], **variables}
        return subprocess.run(["/bin/sh", "-c", script], cwd=self.base, env=environment, capture_output=True, text=True,
                              check=False, timeout=120)

    def dump(self, name: str, content: bytes) -> None:
        """What the mongodump step leaves in the scratch volume: one archive."""
        out = self.scratch / "out"
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            old.unlink()
        (out / name).write_bytes(content)

    def age(self, name: str, days: float) -> None:
        stored = self.objects / name
        when = time.time() - days * DAY
        os.utime(stored, (when, when))


@pytest.fixture
def bucket(tmp_path: Path) -> Bucket:
    assert shutil.which("rclone"), "rclone is missing: run scripts/bootstrap"
    return Bucket(tmp_path)


def test_upload_stores_the_dump_encrypted_and_deletes_only_backups_older_than_the_window(bucket: Bucket) -> None:
    old, recent, new = (f"taskflow-2026110{d}T030000Z.archive.gz" for d in (1, 3, 5))
    for name in (old, recent):
        bucket.dump(name, name.encode() * 100)
        assert bucket.run(cronjob(), "upload").returncode == 0
    keep_days = int(bucket.settings["BACKUP_KEEP_DAYS"])
    bucket.age(f"{old}.bin", keep_days + 1)
    bucket.age(f"{recent}.bin", keep_days - 1)
    (bucket.objects / "notes.txt").write_text("the operator's own")
    bucket.age("notes.txt", keep_days + 10)
    content = b"mongodump archive " * 1000

    bucket.dump(new, content)
    uploaded = bucket.run(cronjob(), "upload")

    assert uploaded.returncode == 0, uploaded.stderr
    assert "0 differences found" in uploaded.stderr, "the upload is read back and compared"
    assert sorted(p.name for p in bucket.objects.iterdir()) == sorted([f"{recent}.bin", f"{new}.bin", "notes.txt"])
    stored = (bucket.objects / f"{new}.bin").read_bytes()
    assert b"mongodump archive" not in stored and len(stored) > len(content)


def test_restore_fetches_the_newest_backup_or_the_one_named_decrypted_byte_for_byte(bucket: Bucket) -> None:
    contents = {f"taskflow-2026110{d}T030000Z.archive.gz": f"dump of night {d} ".encode() * 500 for d in (1, 2, 3)}
    for name, content in contents.items():
        bucket.dump(name, content)
        assert bucket.run(cronjob(), "upload").returncode == 0
    fetched = bucket.scratch / "taskflow.archive.gz"

    latest = bucket.run(restore_job(), "fetch")
    assert latest.returncode == 0, latest.stderr
    assert fetched.read_bytes() == contents["taskflow-20261103T030000Z.archive.gz"]

    named = bucket.run(restore_job(), "fetch", BACKUP_NAME="taskflow-20261101T030000Z.archive.gz")
    assert named.returncode == 0, named.stderr
    assert fetched.read_bytes() == contents["taskflow-20261101T030000Z.archive.gz"]


def test_restore_fails_with_another_key_or_an_empty_bucket(bucket: Bucket) -> None:
    empty = bucket.run(restore_job(), "fetch")
    assert empty.returncode != 0 and "no backup in the bucket" in empty.stderr
    bucket.dump("taskflow-20261101T030000Z.archive.gz", b"a dump")
    assert bucket.run(cronjob(), "upload").returncode == 0
    wrong = {**SECRETS, (BACKUP_SECRET, "crypt-password"): "another passphrase"}
    assert bucket.run(restore_job(), "fetch", secrets=wrong).returncode != 0
    assert not (bucket.scratch / "taskflow.archive.gz").exists()


def test_upload_refuses_the_bases_placeholder_bucket_before_sending_anything(bucket: Bucket) -> None:
    """Bucket names are global: the base names none of the operator's, and a backup to its
    placeholder fails at once, naming the setting, until the overlay sets a bucket."""
    placeholder = kube.one(kube.build("prod"), "ConfigMap", "mongo-backup")["data"]["BACKUP_BUCKET"]
    bucket.settings["BACKUP_BUCKET"] = placeholder
    bucket.dump("taskflow-20261101T030000Z.archive.gz", b"a dump")
    refused = bucket.run(cronjob(), "upload")
    assert refused.returncode != 0 and "BACKUP_BUCKET" in refused.stderr
    assert not (bucket.base / placeholder).exists(), "nothing was written to the placeholder"
    assert not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", placeholder), "no valid S3 bucket name"


# The README's commands that wait for a Job, run against a kubectl that answers as the API server
# would for a Job going through the given conditions (Kubernetes 1.31 adds SuccessCriteriaMet and
# FailureTarget before Complete and Failed).

JOB_CONDITIONS_TRUE = """{.status.conditions[?(@.status=="True")].type}"""
RUNNING: list[str] = []
COMPLETE = ["SuccessCriteriaMet", "Complete"]
FAILED = ["FailureTarget", "Failed"]


def walkthrough_steps() -> list[str]:
    """The numbered steps of k8s/README.md's walkthrough from an empty cluster, in order."""
    section = re.search(r"^## From an empty cluster.*?(?=^## )", K8S_README.read_text(), re.MULTILINE | re.DOTALL).group(0)
    numbered = re.split(r"^(\d+)\. ", section, flags=re.MULTILINE)
    assert [int(n) for n in numbered[1::2]] == list(range(1, len(numbered) // 2 + 1)), "steps numbered 1, 2, …"
    return numbered[2::2]


def run_wait(command: str, job: str, states: list[list[str]], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """``command`` run by bash with a kubectl whose ``get job <job>`` answers, at its n-th call,
    the n-th of ``states`` (the last one from then on), and a sleep that returns at once; the result
    and how often the Job was asked for."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.write_text("0")
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"""#!{sys.executable}
import sys
from pathlib import Path
expected = ["-n", "taskflow", "get", "job", {job!r}, "-o", "jsonpath=" + {JOB_CONDITIONS_TRUE!r}]
if sys.argv[1:] != expected:
    sys.exit("this kubectl answers only " + " ".join(expected))
calls = Path({str(calls)!r})
n = int(calls.read_text())
calls.write_text(str(n + 1))
states = {states!r}
print(" ".join(states[min(n, len(states) - 1)]), end="")
""")
    kubectl.chmod(0o755)
    (bin_dir / "sleep").symlink_to(shutil.which("true"))
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    ran = subprocess.run(["bash", "-c", command], env=environment, capture_output=True, text=True, check=False, timeout=30)
    return ran, int(calls.read_text())


def waits_for(job: str, text: str) -> str:
    (command,) = [line.strip() for line in text.splitlines() if f"get job {job} " in line and line.strip().startswith("until ")]
    return command


@pytest.mark.parametrize(("outcome", "state"), [("complete", COMPLETE), ("failed", FAILED)])
def test_the_walkthrough_sets_the_bucket_before_applying_then_runs_a_first_backup_and_waits_for_its_outcome(
    outcome: str, state: list[str], tmp_path: Path
) -> None:
    steps = walkthrough_steps()
    bucket_step = next(i for i, step in enumerate(steps) if "`BACKUP_BUCKET`" in step)
    apply_step = next(i for i, step in enumerate(steps) if "kustomize build k8s/overlays/prod-tls | kubectl apply -f -" in step)
    backup_step = next(i for i, step in enumerate(steps) if "create job --from=cronjob/mongo-backup backup-now" in step)
    assert bucket_step < apply_step < backup_step
    command = waits_for("backup-now", steps[backup_step])
    ran, calls = run_wait(command, "backup-now", [RUNNING, RUNNING, state], tmp_path)
    assert ran.returncode == 0 and calls == 3, ran.stderr
    assert ran.stdout.split()[-1] == state[-1], "the loop says how the Job ended"


@pytest.mark.parametrize(("outcome", "state"), [("complete", COMPLETE), ("failed", FAILED)])
def test_the_restore_runbook_waits_for_the_restore_to_complete_or_fail(outcome: str, state: list[str], tmp_path: Path) -> None:
    """mongo-restore never retries (backoffLimit 0): a wait for completion alone would hang until
    its timeout when it fails. The runbook's wait returns on either outcome, and says which."""
    assert restore_job()["spec"]["backoffLimit"] == 0
    runbook = re.search(r"^### Restore a backup.*?(?=^##)", K8S_README.read_text(), re.MULTILINE | re.DOTALL).group(0)
    assert "wait --for=condition=complete job/mongo-restore" not in runbook
    command = waits_for("mongo-restore", runbook)
    assert runbook.index("kustomize build k8s/restore | kubectl create -f -") < runbook.index(command)
    ran, calls = run_wait(command, "mongo-restore", [RUNNING, RUNNING, state], tmp_path)
    assert ran.returncode == 0 and calls == 3, ran.stderr
    assert ran.stdout.split()[-1] == state[-1]
