"""Each service's Dockerfile builds from what the repository has, runs its gunicorn app as a
non-root user and checks its own health; checked offline, with BuildKit's parser, Docker's
.dockerignore rules and hadolint."""

from __future__ import annotations

import re
import runpy
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import import_module
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from . import dockerfiles
from .repo import METRICS_PORT, ROOT, SERVICES, WORKER_METRICS_PORT, design_ports, tool

PYTHON_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


def build_context() -> set[str]:
    """The files `docker build .` sends from the repository root, by Docker's .dockerignore rules."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return set(exclude_paths(str(ROOT), patterns))


@pytest.mark.parametrize("service", SERVICES)
def test_every_copy_source_exists_and_is_in_the_build_context(service: str) -> None:
    context = build_context()
    sources = dockerfiles.context_copies(service)
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in context, f"{source} is excluded by .dockerignore"


def test_build_context_leaves_out_tests_state_tools_and_secrets() -> None:
    context = build_context()
    leaked = [
        path
        for path in context
        if re.search(r"(^|/)(tests|var|\.venv|\.tools|\.git|deploy|k8s)(/|$)|\.pem$|\.env$", path)
    ]
    assert leaked == []
    assert "libs/common/taskflow_common/settings.py" in context


@pytest.mark.parametrize("service", SERVICES)
def test_every_stage_uses_the_pinned_python_311_slim_image(service: str) -> None:
    bases = {stage.base for stage in dockerfiles.stages(service)}
    assert len(bases) == 1
    assert PYTHON_BASE.match(bases.pop())


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_are_installed_before_the_code_is_copied(service: str) -> None:
    build = dockerfiles.stages(service)[0]
    steps = [(command.cmd, " ".join(command.value)) for command in build.commands if command.cmd in ("COPY", "RUN")]
    first_code = next(index for index, (cmd, value) in enumerate(steps) if cmd == "COPY" and "taskflow_" in value)
    dependency_install = next(
        index for index, (cmd, value) in enumerate(steps) if cmd == "RUN" and "-c requirements/constraints.txt" in value
    )
    assert dependency_install < first_code
    assert all(
        "pyproject.toml" in value or "constraints.txt" in value
        for cmd, value in steps[:dependency_install]
        if cmd == "COPY"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_image_runs_as_an_unprivileged_user_with_only_the_runtime_files(service: str) -> None:
    runtime = dockerfiles.stages(service)[-1]
    user = runtime.last("USER").value[0]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "a numeric non-root uid:gid, so Kubernetes can verify runAsNonRoot"
    copies = [(command.flags, command.value) for command in runtime.all("COPY")]
    assert copies == [
        (("--from=build",), ("/opt/venv", "/opt/venv")),
        ((), (f"services/{service}/gunicorn.conf.py", "/app/gunicorn.conf.py")),
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_gunicorn_with_the_service_config(service: str) -> None:
    runtime = dockerfiles.stages(service)[-1]
    entrypoint = runtime.last("ENTRYPOINT")
    assert entrypoint.json and entrypoint.value == ("gunicorn", "-c", "/app/gunicorn.conf.py")
    env = runtime.env()
    assert env["HOST"] == "0.0.0.0"
    assert int(env[f"{service.upper()}_PORT"]) == design_ports()[service]
    assert int(env["METRICS_PORT"]) == METRICS_PORT
    assert int(env["WORKER_METRICS_PORT"]) == WORKER_METRICS_PORT
    exposed = {int(port) for command in runtime.all("EXPOSE") for port in command.value}
    assert exposed == {design_ports()[service], METRICS_PORT, WORKER_METRICS_PORT}


@pytest.mark.parametrize("service", SERVICES)
def test_gunicorn_config_binds_the_image_port_and_its_app_imports(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = dockerfiles.stages(service)[-1].env()
    port_variable = f"{service.upper()}_PORT"
    monkeypatch.setenv("HOST", env["HOST"])
    monkeypatch.setenv(port_variable, env[port_variable])
    # The config sets this when unset; keep the test process's own metrics mode untouched.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    config = runpy.run_path(str(ROOT / "services" / service / "gunicorn.conf.py"))

    assert config["bind"] == f"0.0.0.0:{env[port_variable]}"
    module_name, _, call = config["wsgi_app"].partition(":")
    assert module_name == f"taskflow_{service}"
    assert (ROOT / "services" / service / module_name) in {
        Path(ROOT / source) for source in dockerfiles.context_copies(service)
    }
    factory = getattr(import_module(module_name), call.removesuffix("()"))
    assert callable(factory)


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[HTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_passes_only_when_healthz_answers_2xx(
    service: str, status: int, healthy: bool, health_server: tuple[HTTPServer, type[_Health]]
) -> None:
    server, handler = health_server
    handler.status = status
    healthcheck = dockerfiles.stages(service)[-1].last("HEALTHCHECK")
    assert healthcheck.json and healthcheck.value[0] == "CMD"
    command = healthcheck.value[1:]
    assert command[0] == "python"
    env = {f"{service.upper()}_PORT": str(server.server_address[1])}
    result = subprocess.run([tool("python"), *command[1:]], env=env, capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


def test_dockerfiles_differ_only_in_the_service_name_and_port() -> None:
    def normalized(service: str) -> str:
        text = dockerfiles.path(service).read_text()
        return (
            text.replace(service, "<name>")
            .replace(service.upper(), "<NAME>")
            .replace(str(design_ports()[service]), "<port>")
        )

    assert {normalized(service) for service in SERVICES} == {normalized("auth")}


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_finds_nothing(service: str) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfiles.path(service))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
