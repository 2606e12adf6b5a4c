"""The benchmark's bookkeeping (not its timings: those live in bench/results.json, never in tests)."""

from __future__ import annotations

from bench.common import Row, markdown, median_time, ratio_row


def test_ratio_rows_and_targets():
    faster = ratio_row("g", "fast", 30.0, "clips/s", "full decode", 3.0, target=3)
    slower = ratio_row("g", "slow", 2.0, "clips/s", "full decode", 3.0, target=3)
    seconds = ratio_row("g", "time", 0.5, "s", "baseline", 2.0, higher_is_better=False)
    assert faster.ratio == 10 and faster.met is True
    assert slower.ratio < 1 and slower.met is False
    assert seconds.ratio == 4
    assert Row("g", "no baseline", 1.0, "x").met is None


def test_markdown_table_says_met_or_missed():
    rows = [ratio_row("kf", "exact", 9.0, "clips/s", "full", 1.0, target=10)]
    payload = {
        "machine": {"cpus": 2, "processor": "x86_64", "python": "3.11", "torch": "2", "cuda": None},
        "seconds": 60.0,
        "rows": [{**r.__dict__, "met": r.met} for r in rows],
    }
    table = markdown(payload)
    assert "| kf | exact | 9 clips/s | full: 1 | 9.00× | ≥ 10× MISSED |" in table
    assert "no GPU" in table


def test_median_time_runs_warmup_and_reps():
    calls = []
    median_time(lambda: calls.append(1), reps=3, warmup=2)
    assert len(calls) == 5
