"""What the end-to-end tests share beyond the root fixtures: each test's outcome, for fixtures
that keep evidence of a failure (the browser tests' screenshots)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

OUTCOME = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "call":
        item.stash[OUTCOME] = report
