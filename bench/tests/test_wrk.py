"""Reading wrk's figures."""

from __future__ import annotations

import pytest

from bench.wrk import WrkFailed, parse

OUTPUT = """Running 10s test @ http://127.0.0.1:5002/api/v1/tasks/x
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.00ms  30.00ms   90.00%
  4000 requests in 10.00s, 1.00MB read
Requests/sec:    400.00
WRK_JSON {"requests":4000,"duration_us":10000000,"bytes":1000000,"errors":{"connect":0,"read":0,"write":0,"status":40,"timeout":0},"latency_us":{"mean":4100.0,"p50":3900,"p90":5200,"p99":9800,"max":30000}}
"""


def test_parse_reads_the_exact_figures_in_milliseconds() -> None:
    result = parse(OUTPUT)
    assert (result.requests, result.errors, result.duration_s) == (4000, 40, 10.0)
    assert (result.p50_ms, result.p90_ms, result.p99_ms, result.max_ms) == (3.9, 5.2, 9.8, 30.0)
    assert result.mean_ms == 4.1


def test_rate_counts_only_successful_requests() -> None:
    assert parse(OUTPUT).rate == 396.0


def test_output_without_figures_is_a_failure() -> None:
    with pytest.raises(WrkFailed, match="no figures"):
        parse("unable to connect to 127.0.0.1:1 Connection refused\n")
