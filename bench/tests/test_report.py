"""The report's rows: every checked figure, arms by number whatever order they ran in."""

from __future__ import annotations

from bench import report
from bench.figures import Target


def _arm(name: str, *values: float) -> dict:
    return {"arm": name, "checks": [Target(f"{name} figure {n}", 1).check(value) for n, value in enumerate(values)]}


def test_rows_list_every_check_by_arm_number() -> None:
    results = {"arms": [_arm("B10", 2), _arm("B3", 0.5, 3), _arm("B1", 1)]}
    assert [(row[0], row[2], row[4]) for row in report.rows(results)] == [
        ("B1", "1", "PASS"), ("B3", "0.5", "FAIL"), ("B3", "3", "PASS"), ("B10", "2", "PASS"),
    ]


def test_table_aligns_its_columns() -> None:
    lines = report.table({"arms": [_arm("B1", 0.853)]}).splitlines()
    assert lines[0].startswith("arm") and len({line.index("0.853") for line in lines[2:]}) == 1
