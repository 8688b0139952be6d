"""Issue 22 §5: the GitHub Actions workflow a fork runs, checked offline. It is a valid workflow
(check-jsonschema's vendored GitHub workflow schema), every command it runs exists in the
repository, it runs `make test` on every push, and it builds, scans and (on tags) pushes exactly
the images the manifests deploy."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import kube
from .repo import ROOT, SERVICES, tool

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
# Programs of the runner or its container image rather than of the repository.
SYSTEM_COMMANDS = {"apt-get", "echo", "docker", "tee", "sed", "grep", "git", "set"}
# How the runner starts a step's script on Linux, by the step's `shell` (GitHub's workflow syntax,
# jobs.<job_id>.steps[*].shell): without one, bash without pipefail.
RUNNER_SHELLS = {None: ["bash", "-e"], "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"]}
DIGEST = "sha256:" + "0123456789abcdef" * 4


def workflow() -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); the workflow's own parser reads it as "on".
    loaded = yaml.safe_load(WORKFLOW.read_text())
    loaded["on"] = loaded.pop(True)
    return loaded


def steps(job: str) -> list[dict[str, Any]]:
    return workflow()["jobs"][job]["steps"]


def commands(script: str) -> list[list[str]]:
    """Each simple command of a ``run:`` script, split as the shell would (``&&``, ``;``, ``|``),
    comment lines left out."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part.split(">>")[0])
            if words:
                found.append(words)
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_the_workflow_validates_against_the_github_workflow_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_the_workflow_runs_exists_in_the_repository() -> None:
    targets = make_targets()
    ran = []
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            for words in commands(step.get("run", "")):
                program = words[0]
                ran.append(program)
                if program == "make":
                    assert set(words[1:]) <= targets, words
                elif "/" in program:
                    path = ROOT / program
                    assert path.is_file() and os.access(path, os.X_OK), program
                else:
                    assert program in SYSTEM_COMMANDS, f"{program} is neither the repository's nor the runner's"
    assert "make" in ran


def test_make_test_runs_on_every_push_before_any_image_is_built() -> None:
    triggers = workflow()["on"]
    assert triggers["push"]["branches"] == ["**"] and "pull_request" in triggers
    assert [step["run"] for step in steps("test") if "run" in step][-1] == "make test"
    assert workflow()["jobs"]["images"]["needs"] == "test"


def test_the_test_container_gives_chromium_shared_memory_and_roots_git_the_runners_checkout(tmp_path: Path) -> None:
    """The test job's container runs as root over a checkout the runner's user owns, which git
    refuses (actions/checkout#1048) unless the workspace is a safe directory: the steps between
    the checkout and `make test` run here as the runner would, with git told to see another owner."""
    job = workflow()["jobs"]["test"]
    assert "--shm-size=1g" in job["container"]["options"].split()
    uses = [step.get("uses", "") for step in job["steps"]]
    after_checkout = job["steps"][uses.index("actions/checkout@v4") + 1 : -1]
    workspace, home = tmp_path / "workspace", tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    environment = {
        "PATH": os.environ["PATH"], "HOME": str(home), "GITHUB_WORKSPACE": str(workspace),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_TEST_ASSUME_DIFFERENT_OWNER": "1",
    }

    def git_works() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "check-ignore", "-q", "anything"], cwd=workspace, env=environment,
                              capture_output=True, text=True, check=False)

    assert "dubious ownership" in git_works().stderr, "git no longer refuses another owner's repository"
    for step in after_checkout:
        if "run" in step:
            subprocess.run(["bash", "-e", "-c", step["run"]], env=environment, check=True)
    assert git_works().returncode == 1, git_works().stderr  # 1: not ignored, rather than 128: refused


def test_the_workflow_builds_scans_and_pushes_exactly_the_images_the_manifests_deploy() -> None:
    matrix = workflow()["jobs"]["images"]["strategy"]["matrix"]["include"]
    dockerfiles = {entry["image"]: entry["dockerfile"] for entry in matrix}
    assert dockerfiles == {**{s: f"services/{s}/Dockerfile" for s in SERVICES}, "web": "web/Dockerfile"}
    assert all((ROOT / path).is_file() for path in dockerfiles.values())
    deployed = {  # the logical names, whichever registry an overlay puts in front of them
        re.sub(r"^(?:registry\.invalid/)?(taskflow/[^:@]+).*$", r"\1", container["image"])
        for workload in kube.workloads(kube.build("dev"))
        for container in kube.containers(kube.pod_template(workload))
        if "taskflow/" in container["image"]
    }
    assert deployed == {f"taskflow/{image}" for image in dockerfiles}
    uses = [step.get("uses", "") for step in steps("images")]
    build, scan = uses.index("docker/build-push-action@v6"), next(i for i, u in enumerate(uses) if u.startswith("aquasecurity/trivy-action@"))
    assert build < scan
    # What is pushed is the image that was scanned, retagged: a second build could differ from it
    # (a base image's tag moved in between, a cache miss).
    push = next(step for step in steps("images") if step.get("id") == "push")
    assert push["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert uses.count("docker/build-push-action@v6") == 1
    scanned = next(step for step in steps("images") if step.get("uses", "").startswith("aquasecurity/"))["with"]["image-ref"]
    assert push["env"]["SCANNED"] == scanned
    assert [words[:2] for words in commands(push["run"]) if words[0] == "docker"] == [["docker", "tag"], ["docker", "push"]]
    assert "$GITHUB_OUTPUT" in push["run"] and "digest=" in push["run"]
    assert workflow()["on"]["push"]["tags"] == ["v*"]
    pin = steps("images")[-1]["run"]
    assert "kustomize edit set image taskflow/${{ matrix.image }}=" in pin and "@${{ steps.push.outputs.digest }}" in pin


@pytest.mark.parametrize(
    ("printed", "status", "output"),
    [
        (f"v1.2.3: digest: {DIGEST} size: 1573\n", 0, f"digest={DIGEST}\n"),
        ("denied: requested access to the resource is denied\n", 1, None),
        ("v1.2.3: pushed, but the digest line went missing\n", 0, None),
    ],
    ids=["pushed", "push-failed", "no-digest"],
)
def test_the_push_step_fails_unless_the_push_succeeded_and_printed_a_digest(
    tmp_path: Path, printed: str, status: int, output: str | None
) -> None:
    """The push step's script run as the runner runs it, with a `docker` that prints what a push
    prints: a failed push or one without a digest fails the step instead of pinning no image."""
    push = next(step for step in steps("images") if step.get("id") == "push")
    script, docker = tmp_path / "push.sh", tmp_path / "bin" / "docker"
    script.write_text(push["run"])
    docker.parent.mkdir()
    docker.write_text(f'#!/bin/sh\n[ "$1" = push ] || exit 0\nprintf %s {shlex.quote(printed)}\nexit {status}\n')
    docker.chmod(0o755)
    github_output = tmp_path / "output"
    github_output.touch()
    environment = {
        "PATH": f"{docker.parent}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(github_output),
        "SCANNED": "taskflow/auth:scan", "TARGET": "ghcr.io/you/taskflow/auth:v1.2.3",
    }
    ran = subprocess.run([*RUNNER_SHELLS[push.get("shell")], str(script)], cwd=tmp_path, env=environment,
                         capture_output=True, text=True, check=False)
    assert (ran.returncode == 0) == (output is not None), ran.stdout + ran.stderr
    if output is not None:
        assert github_output.read_text() == output
    else:
        assert "digest=" not in github_output.read_text()


def test_every_action_is_pinned_to_a_release() -> None:
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v?\d+(\.\d+)*", step["uses"]), step["uses"]
