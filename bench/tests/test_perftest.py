"""Reading PerfTest's summary."""

from __future__ import annotations

import pytest

from bench.perftest import parse

OUTPUT = """id: test-1, time 1.001 s, sent: 10 msg/s, min/median/75th/95th/99th consumer latency: 1832/2399/2963/11463/11463 µs
test stopped (Reached time limit)
id: test-1, sending rate avg: 10 msg/s
id: test-1, consumer latency min/median/75th/95th/99th 1728/2496/3047/6039/12007 µs
id: test-1, confirm latency min/median/75th/95th/99th 1540/2115/2515/4825/11177 µs
"""


def test_parse_reads_the_whole_runs_consumer_latency_in_ms() -> None:
    assert parse(OUTPUT) == {"min": 1.728, "p50": 2.496, "p75": 3.047, "p95": 6.039, "p99": 12.007}


def test_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no consumer latency"):
        parse("Connection refused\n")
