"""The benchmark's bookkeeping (not its timings: those live in bench/results.json, never in tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_filter_costs_come_from_the_default_rows():
    from bench.costs import DEFAULT, SEMANTIC, summary

    def row(group, name, value, base=None):
        return {"group": group, "name": name, "value": value, "baseline_value": base}

    rows = [row("motion 720p text", DEFAULT["motion"], 0.53, 0.56), row("motion 720p text", "pairs 0", 0.005),
            row("text_overlay 720p text", DEFAULT["text_overlay"], 0.012), row(*SEMANTIC, 414.2)]  # fmt: skip
    line = summary({"machine": {"cpus": 2, "processor": "Xeon"}, "rows": rows})
    assert "(2 CPUs, Xeon)" in line and "`motion` 0.53 s on a 720p clip (not measured on a demo clip)" in line
    assert "`text_overlay` 12 ms on a 720p clip with text" in line
    assert "against 0.56 s for the `keyframes`" in line
    assert "414 µs a clip" in line and line.count("\n") == 1


def test_median_time_runs_warmup_and_reps():
    calls = []
    median_time(lambda: calls.append(1), reps=3, warmup=2)
    assert len(calls) == 5


def test_scale_manifest_cycles_the_real_videos_with_distinct_ids_and_both_languages(tmp_path):
    from bench.scale import VIDEO_DIRS, build_manifest

    if not all(d.is_dir() for d in VIDEO_DIRS):
        pytest.skip("no real videos")
    rows = [json.loads(line) for line in build_manifest(tmp_path, 30).read_text("utf-8").splitlines()]
    videos = {p for d in VIDEO_DIRS for p in d.iterdir() if p.suffix in (".mp4", ".mkv", ".avi")}
    assert len({r["id"] for r in rows}) == 30
    assert {Path(r["video"]) for r in rows} == videos and all(Path(r["video"]).is_absolute() for r in rows)
    han = [any("\u4e00" <= ch <= "\u9fff" for ch in r["caption"]) for r in rows]
    assert 0 < sum(han) < len(rows)


def test_cut_matching_counts_each_known_cut_once():
    from bench.split import match

    assert match([30, 31, 100, 250], [30, 99, 200]) == (2, 2, 1)  # 31 is a second hit near 30: a FP
    assert match([], [10]) == (0, 0, 1) and match([10], []) == (0, 1, 0)
