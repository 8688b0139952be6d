"""The outputs of a run: ``bench/results/<timestamp>.json``, the table printed at the end, and
``docs/benchmarks.md`` (the latest run, with machine, versions and method)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per checked figure: arm, figure, value, target, verdict."""
    return [
        [arm["arm"], check["figure"], f"{check['value']:g}", check["target"], check["verdict"]]
        for arm in _in_order(results)
        for check in arm["checks"]
    ]


def _in_order(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The arms by number (B1 … B9), whatever order they ran in."""
    return sorted(results["arms"], key=lambda arm: int(arm["arm"][1:]))


def table(results: dict[str, Any]) -> str:
    """The figures as an aligned plain-text table."""
    header = ["arm", "figure", "value", "target", "verdict"]
    body = rows(results)
    widths = [max(len(row[column]) for row in [header, *body]) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *body]]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])


def write_json(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{results['started_at'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def _cell(value: Any) -> str:
    return json.dumps(value, default=str).replace("|", "\\|")


def markdown(results: dict[str, Any], notes: str) -> str:
    """docs/benchmarks.md: summary table, machine and versions, then each arm's method and figures,
    then ``notes`` (the hand-written findings: profiles, fixes, what this stack cannot do)."""
    machine, versions = results["machine"], results["versions"]
    lines = [
        "# Benchmarks",
        "",
        "`make bench` writes this page from its latest run (the hand-written findings at the end are kept",
        "in `bench/findings.md`). Every figure is a ratio between arms measured in the same run on the same",
        "machine, so it says how close TaskFlow comes to a physical limit, not how fast this machine is.",
        "",
        f"Run of {results['started_at']} (UTC), {results['duration_s']:.0f} s in all; load average "
        f"{' / '.join(map(str, results['load_average_before']))} (1/5/15 min) before, "
        f"{' / '.join(map(str, results['load_average_after']))} after: other people's work shares this machine.",
        "",
        "| arm | figure | value | target | verdict |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows(results)),
        "",
        "## Machine and versions",
        "",
        *(f"- {name}: {value}" for name, value in {**machine, **versions}.items()),
        "",
        "## Arms",
        "",
    ]
    for arm in _in_order(results):
        lines += [
            f"### {arm['arm']}: {arm['title']}",
            "",
            f"- method: {arm['method']}",
            f"- tool: {arm['tool']}; concurrency: {arm['concurrency']}; duration: {arm['duration']}",
            f"- data: {arm['data']}; FerretDB handler: {arm['ferretdb_handler']}",
            f"- load average after the arm: {' / '.join(map(str, arm['load_average_after']))}",
            *(f"- {check['figure']}: **{check['value']:g}** (target {check['target']}): {check['verdict']}"
              for check in arm["checks"]),
            "",
            "| measurement | value |",
            "|---|---|",
            *(f"| {name} | {_cell(value)} |" for name, value in arm["measurements"].items()),
            "",
        ]
    return "\n".join(lines) + "\n" + notes
