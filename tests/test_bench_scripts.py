"""The benchmark scripts start (their imports and arguments hold together) without a server, and
the reads benchmark judges its rows by the issue's target. Running them takes minutes: that is
scripts/bench's job, not the suite's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench  # noqa: E402
import bench_reads  # noqa: E402


@pytest.mark.parametrize("name", sorted(bench.BENCHMARKS))
def test_every_benchmark_of_scripts_bench_answers_help(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / f"bench_{name}.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--json" in result.stdout and "--target" in result.stdout


def test_a_reads_row_meets_the_target_only_within_both_ratios() -> None:
    native = [0.010] * 100
    within = bench_reads.Row("room list", [0.0119] * 98 + [0.0149] * 2, native).as_json()
    assert within["ratio_p50"] == pytest.approx(1.19) and within["ratio_p99"] == pytest.approx(1.49)
    assert within["met"] is True
    slow_tail = bench_reads.Row("room list", [0.010] * 98 + [0.016] * 2, native).as_json()
    assert slow_tail["ratio_p50"] == pytest.approx(1.0) and slow_tail["met"] is False
    slow_middle = bench_reads.Row("room list", [0.0125] * 100, native).as_json()
    assert slow_middle["met"] is False
    table = bench.table([{**within, "target": "single"}, {**slow_tail, "target": "single"}])
    assert "pass" in table and "FAIL" in table


def test_a_fast_reads_row_samples_for_its_minimum_time_and_a_slow_one_stops_at_its_count() -> None:
    measure = bench_reads.Measure(samples=100, min_seconds=3.0)
    fast = ([0.003] * 100, [0.003] * 100)  # 0.3 s a side after the 100 rounds
    assert measure.more(99, fast) and measure.more(100, fast)
    assert not measure.more(1000, ([0.003] * 1000, [0.003] * 1000))  # at most 10 × the count
    slow = ([0.05] * 100, [0.04] * 100)  # 4-5 s a side
    assert not measure.more(100, slow)
    one_slow_side = ([0.05] * 100, [0.003] * 100)
    assert measure.more(100, one_slow_side)  # both sides need their time
    assert not bench_reads.Measure(samples=30, min_seconds=0).more(30, ([0.003] * 30, [0.003] * 30))
