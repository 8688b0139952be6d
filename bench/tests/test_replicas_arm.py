"""B9's arithmetic: throughput with n instances as a ratio to one instance."""

from __future__ import annotations

import pytest

from bench.arms.replicas import scaling


def test_each_count_is_a_ratio_to_one_instance() -> None:
    assert scaling({4: 450.0, 1: 300.0, 2: 390.0}) == {1: 1.0, 2: 1.3, 4: 1.5}


def test_without_one_instance_there_is_nothing_to_compare_to() -> None:
    with pytest.raises(KeyError):
        scaling({2: 390.0, 4: 450.0})
