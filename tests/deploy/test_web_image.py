"""The web client's image (web/Dockerfile), its Compose service and Kubernetes workload, offline."""

from __future__ import annotations

import re
import subprocess

import dockerfile
import yaml

from . import compose, kube
from .repo import ROOT, design_ports, tool
from .test_images import build_context

WEB_DOCKERFILE = ROOT / "web" / "Dockerfile"


def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(WEB_DOCKERFILE)))


def test_every_copy_source_is_in_the_build_context_and_the_build_leftovers_are_not() -> None:
    context = build_context()
    sources = [source for command in commands() if command.cmd == "COPY" and not command.flags
               for source in command.value[:-1]]
    assert "web/package-lock.json" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in context or any(path.startswith(source + "/") for path in context), source
    assert not [path for path in context if re.match(r"web/(node_modules|dist|tests)/", path)]


def test_the_image_is_pinned_unprivileged_nginx_serving_the_design_port() -> None:
    bases = [command.value[0] for command in commands() if command.cmd == "FROM"]
    assert all(re.search(r":\d+\.\d+\.\d+", base) for base in bases), bases
    assert bases[-1].startswith("nginxinc/nginx-unprivileged:")
    final = commands()[[command.cmd for command in commands()].index("FROM", 1):]
    assert [command.value[0] for command in final if command.cmd == "USER"] == ["101:101"]
    assert [command.value[0] for command in final if command.cmd == "EXPOSE"] == [str(design_ports()["web"])]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([tool("hadolint"), "--no-color", str(WEB_DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kong_compose_and_kubernetes_agree_on_the_web_service() -> None:
    port = design_ports()["web"]
    kong = yaml.safe_load((ROOT / "gateway" / "kong.yml").read_text())
    assert next(service for service in kong["services"] if service["name"] == "web")["url"] == f"http://web:{port}"
    web = compose.load()["services"]["web"]
    assert web["expose"] == [str(port)] and web["read_only"] is True
    assert compose.load()["services"]["gateway"]["depends_on"]["web"] == {"condition": "service_healthy"}
    for overlay in kube.OVERLAYS:
        service = kube.one(kube.build(overlay), "Service", "web")
        assert service["spec"]["ports"][0]["port"] == port
