"""The arithmetic of the report: percentiles, ratios, spreads and targets (pure functions)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values`` by linear interpolation between ranks.

    Raises:
        ValueError: no values.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> float:
    """How far repeated measurements disagree: (max − min) ÷ median, 0 for one value."""
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / statistics.median(values)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator ÷ denominator`` rounded to three decimals.

    Raises:
        ZeroDivisionError: a zero denominator (an arm measured nothing).
    """
    return round(numerator / denominator, 3)


@dataclass(frozen=True)
class Target:
    """A bound a figure must respect: ``at_least`` or ``at_most`` ``bound`` (in the figure's unit)."""

    figure: str
    bound: float
    at_most: bool = False
    unit: str = ""

    def holds(self, value: float) -> bool:
        return value <= self.bound if self.at_most else value >= self.bound

    def describe(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.bound:g}{(' ' + self.unit) if self.unit else ''}"

    def check(self, value: float) -> dict[str, object]:
        """The report entry: figure, value, target and PASS/FAIL."""
        return {
            "figure": self.figure,
            "value": value,
            "target": self.describe(),
            "verdict": "PASS" if self.holds(value) else "FAIL",
        }
