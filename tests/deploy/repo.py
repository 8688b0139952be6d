"""Where the deployment artifacts and the offline tools that check them live, and what DESIGN
says they must agree with (§2 ports, §7 variables)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "tasks", "admin", "notify")
METRICS_PORT = 9100
WORKER_METRICS_PORT = 9100


def tool(name: str) -> str:
    """Path of a validator scripts/bootstrap installs: Go tools in .tools/bin, Python ones in .venv/bin."""
    tools = Path(os.environ.get("TASKFLOW_TOOLS", ROOT / ".tools")) / "bin" / name
    venv = Path(os.environ.get("TASKFLOW_VENV", ROOT / ".venv")) / "bin" / name
    found = next((path for path in (tools, venv) if path.exists()), None)
    assert found is not None, f"{name} is missing: run scripts/bootstrap"
    return str(found)


def _design_section(number: int) -> str:
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"DESIGN.md has no section {number}"
    return match.group(0)


def design_ports() -> dict[str, int]:
    """DESIGN §2's table: component name (lower-cased) → port."""
    rows = [line for line in _design_section(2).splitlines() if line.startswith("|")]
    names = [cell.strip().lower() for cell in rows[0].strip("|").split("|")]
    ports = [int(cell) for cell in rows[2].strip("|").split("|")]
    return dict(zip(names, ports, strict=True))


def design_variables() -> set[str]:
    """The environment variables DESIGN §7 names."""
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", _design_section(7)))
