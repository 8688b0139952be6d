"""The report's arithmetic."""

from __future__ import annotations

import pytest

from bench.figures import Target, percentile, ratio, spread


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0.5) == 25.0
    assert percentile(values, 0.0) == 10.0
    assert percentile(values, 1.0) == 40.0
    assert percentile([7.0], 0.99) == 7.0


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_spread_is_range_over_median() -> None:
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([5.0]) == 0.0


def test_ratio_rounds_to_three_decimals() -> None:
    assert ratio(2.0, 3.0) == 0.667


@pytest.mark.parametrize(
    ("target", "value", "verdict"),
    [
        (Target("gateway", 0.85), 0.85, "PASS"),
        (Target("gateway", 0.85), 0.849, "FAIL"),
        (Target("added p50", 0.5, at_most=True, unit="ms"), 0.5, "PASS"),
        (Target("added p50", 0.5, at_most=True, unit="ms"), 0.51, "FAIL"),
    ],
)
def test_target_verdicts_include_the_bound(target: Target, value: float, verdict: str) -> None:
    assert target.check(value)["verdict"] == verdict


def test_target_describes_its_bound() -> None:
    assert Target("rss", 80, at_most=True, unit="MiB").describe() == "≤ 80 MiB"
    assert Target("ratio", 0.67).describe() == "≥ 0.67"
