"""`vtcurate diff`: the clips two runs treated differently, at the first stage where they did."""

from __future__ import annotations

import json

from conftest import CPU_STAGES

from helpers import CONFIGS
from vtcurate.config import load_config
from vtcurate.pipeline.executor import run_pipeline
from vtcurate.pipeline.rundir import RunDir
from vtcurate.report.diff import diff, format_diff
from vtcurate.storage import read_columns


def test_a_stricter_language_threshold_shows_at_langid(demo_corpus, demo_llm, cpu_run, tmp_path, capsys):
    a = cpu_run(8)
    strict = "langid.min_confidence.en=0.9"
    overrides = [*CPU_STAGES, "report.enabled=false", "partition_rows=8", strict, *demo_llm]
    b = tmp_path / "strict"
    run_pipeline(load_config(CONFIGS / "demo.yaml", overrides), str(demo_corpus / "manifest.jsonl"), b,
                 runner="local")  # fmt: skip
    assert diff(a, a) == []
    entries = diff(a, b)
    kept = {run: set(read_columns(RunDir(run).stage("langid").kept_parts(), ["clip_id"])["clip_id"])
            for run in (a, b)}  # fmt: skip
    lost = kept[a] - kept[b]
    assert lost and kept[b] <= kept[a]
    assert sorted(e["clip_id"] for e in entries) == sorted(lost)  # nothing else differs, each clip once
    assert {(e["stage"], e["a"], e["b"]) for e in entries} == {("langid", "kept", "low_lang_confidence")}
    back = diff(b, a)
    assert [(e["clip_id"], e["a"], e["b"]) for e in back] == [(e["clip_id"], e["b"], e["a"]) for e in entries]
    text = format_diff(a, b, entries)
    assert f"{len(entries)} clips differ" in text and "low_lang_confidence" in text
    assert "lang_score" in text or "drop_detail" in text  # the examples show what changed
    from vtcurate.cli import main

    assert main(["diff", str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == entries
    assert main(["diff", str(a), str(tmp_path / "nowhere")]) == 2
    page = tmp_path / "diff.html"
    assert main(["diff", str(a), str(b), "--html", str(page)]) == 0
    html = page.read_text("utf-8")
    assert "low_lang_confidence" in html and f"{len(entries)} clips differ" in html
    assert html.count("data:image/jpeg;base64,") >= 1  # thumbnails of the examples
    assert "<script" not in html.lower()  # captions are inert text

