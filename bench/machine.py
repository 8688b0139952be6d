"""What the report says about the machine and the versions of everything measured."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path


def _first_line(argv: list[str], pattern: str = r".+") -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    found = re.search(pattern, completed.stdout + completed.stderr)
    return found.group(0).strip() if found else "unknown"


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{memory_kib / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


def _ferretdb_patches(version: str) -> str:
    """The patches scripts/bootstrap applies to FerretDB ``version``'s source, by file name."""
    found = sorted(Path(__file__).parents[1].glob(f"scripts/patches/ferretdb-{version}-*.patch"))
    return ", ".join(path.name for path in found) or "none"


def versions() -> dict[str, str]:
    tools = Path(os.environ.get("TASKFLOW_TOOLS", Path(__file__).parents[1] / ".tools"))
    ferretdb = _first_line([str(tools / "bin" / "ferretdb"), "--version"], r"v\d+\.\d+\.\d+")
    packages = ("flask", "gunicorn", "pymongo", "pika", "bcrypt", "opentelemetry-sdk", "gevent", "locust")
    return {
        "python": platform.python_version(),
        **{package: metadata.version(package) for package in packages},
        "ferretdb": f"{ferretdb} (patched: {_ferretdb_patches(ferretdb)})",
        "rabbitmq": _first_line(["dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"]),
        "postgresql": _first_line(["sh", "-c", "ls /usr/lib/postgresql"]),
        "nginx": _first_line(["nginx", "-v"], r"nginx/\S+"),
        "wrk": _first_line(["dpkg-query", "-W", "-f", "${Version}", "wrk"]),
        "hyperfine": _first_line(["hyperfine", "--version"]),
        "perftest": "2.22.1 (" + _first_line(["java", "-version"], r"openjdk version \S+") + ")",
    }
