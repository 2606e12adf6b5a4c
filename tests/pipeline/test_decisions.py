"""A changed decision key is re-applied from stored scores (no model, no decoding) and gives what a
fresh run with that key gives; a changed scoring key recomputes exactly its stage and those after."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from helpers import CONFIGS, shard_digests
from vtcurate.config import IngestConfig, LangIdConfig, load_config
from vtcurate.pipeline.executor import run_pipeline
from vtcurate.pipeline.rundir import RunDir
from vtcurate.stages.ingest import IngestStage
from vtcurate.stages.langid import LangIdStage
from vtcurate.storage import read_columns

FLOW = "stages=[ingest, langid, keyframes, clip_filter, shard]"


def _config(fraction: float, *more: str):
    return load_config(CONFIGS / "demo.yaml", [
        FLOW, "report.enabled=false", "partition_rows=16", "clip_filter.enforce_with_random_weights=true",
        f"clip_filter.thresholds={{'*': {{mode: top_fraction, value: {fraction}}}}}", *more,
    ])  # fmt: skip


def _fates(run_dir) -> dict[str, list]:
    rd = RunDir(run_dir)
    out = {}
    for stage in ("ingest", "langid", "keyframes", "clip_filter", "shard"):
        kept = sorted(read_columns(rd.stage(stage).kept_parts(), ["clip_id"])["clip_id"])
        cols = ["clip_id", "drop_reason", "drop_detail"]
        rejected = read_columns(rd.stage(stage).rejected_parts(), cols)
        out[stage] = [kept, sorted(zip(*(rejected[c] for c in cols)))]
    return out


def _no_models_no_decoding(monkeypatch) -> None:
    import vtcurate.models.clip as clip
    import vtcurate.stages.keyframes as keyframes

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded or a video decoded to re-apply a decision")

    monkeypatch.setattr(clip, "load_clip", refuse)
    monkeypatch.setattr(clip, "ClipModel", refuse)
    monkeypatch.setattr(keyframes, "read_keyframes", refuse)


def test_a_changed_decision_key_is_reapplied_without_a_model(demo_corpus, tmp_path, monkeypatch):
    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(_config(0.9), manifest, tmp_path / "run", runner="local")
    before = _fates(tmp_path / "run")
    _no_models_no_decoding(monkeypatch)
    run_pipeline(_config(0.5), manifest, tmp_path / "run", runner="local")  # no --fresh, no flag
    after = _fates(tmp_path / "run")
    assert after["keyframes"] == before["keyframes"] and after["clip_filter"] != before["clip_filter"]
    monkeypatch.undo()
    run_pipeline(_config(0.5), manifest, tmp_path / "fresh", runner="local")
    assert after == _fates(tmp_path / "fresh")  # every stage's kept and rejected rows, with details
    assert shard_digests(tmp_path / "run") == shard_digests(tmp_path / "fresh")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    changes = info["invocations"][-1]["config_changes"]
    assert changes["decision"] == {"clip_filter": ["thresholds"]} and changes["scoring"] == {}
    assert changes["redecided"] == ["clip_filter"] and changes["discarded"] == ["shard"]
    stats = json.loads(RunDir(tmp_path / "run").stage("clip_filter").stats.read_text())
    assert stats["redecided"] == {"keys": ["thresholds"]} and stats["kept"] == len(after["clip_filter"][0])


def test_a_decision_that_keeps_the_same_rows_leaves_later_stages_alone(demo_corpus, tmp_path, monkeypatch):
    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(_config(0.9), manifest, tmp_path / "run", runner="local")
    shard_stats = RunDir(tmp_path / "run").stage("shard").stats.read_text()
    _no_models_no_decoding(monkeypatch)
    run_pipeline(_config(0.9, "ingest.max_duration=3000"), manifest, tmp_path / "run", runner="local")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["invocations"][-1]["config_changes"]["redecided"] == ["ingest"]
    assert info["invocations"][-1]["config_changes"]["discarded"] == []
    assert RunDir(tmp_path / "run").stage("shard").stats.read_text() == shard_stats  # not redone


def test_a_changed_scoring_key_recomputes_its_stage_and_those_after(demo_corpus, tmp_path):
    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(_config(0.9), manifest, tmp_path / "run", runner="local")
    rd = RunDir(tmp_path / "run")
    for stage in ("keyframes", "clip_filter"):
        (rd.stage(stage).path / "witness").write_text("from the first run")
    run_pipeline(_config(0.9, "clip_filter.aggregate=max"), manifest, tmp_path / "run", runner="local")
    assert (rd.stage("keyframes").path / "witness").exists()  # earlier stages kept
    assert not (rd.stage("clip_filter").path / "witness").exists()  # its stage recomputed
    changes = json.loads(rd.run_json.read_text())["invocations"][-1]["config_changes"]
    assert changes["scoring"] == {"clip_filter": ["aggregate"]}
    assert changes["discarded"] == ["clip_filter", "shard"] and changes["redecided"] == []


def test_partition_rows_still_cannot_change(demo_corpus, tmp_path):
    from vtcurate.pipeline.executor import RunDirConflict

    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(_config(0.9, "stages=[ingest]"), manifest, tmp_path / "run", runner="local")
    with pytest.raises(RunDirConflict, match="partition_rows"):
        run_pipeline(_config(0.9, "stages=[ingest]", "partition_rows=8"), manifest, tmp_path / "run",
                     runner="local")  # fmt: skip


@pytest.mark.parametrize(
    ("stage_cls", "config_cls", "first", "second", "rows"),
    [
        (IngestStage, IngestConfig, {"min_duration": 0.5}, {"min_duration": 1.5},
         [{"span_start": 0.0, "span_end": d, "drop_reason": None, "drop_detail": None} for d in (1.0, 2.0)]),
        (LangIdStage, LangIdConfig, {"min_confidence": {"en": 0.3, "zh": 0.5}},
         {"min_confidence": {"en": 0.95, "zh": 0.5}, "min_length": {"en": 6, "zh": 4}},
         [{"caption": c} for c in ("a dog runs in the park", "a man is cooking pasta in a big kitchen",
                                   "一个男人在厨房里做饭", "ok")]),
    ],
)  # fmt: skip
def test_redeciding_equals_deciding_afresh(stage_cls, config_cls, first, second, rows):
    """Scored under one config and re-decided under another, a row gets what scoring under the
    other config gives it (the property the run directory relies on)."""
    table = pa.Table.from_pylist(rows)
    if stage_cls is LangIdStage:
        scored = stage_cls(config_cls(**first))(table)
        fresh = stage_cls(config_cls(**second))(table)
    else:  # ingest scores by probing files: its decision step alone, on spans it would have probed
        scored = stage_cls(config_cls(**first)).redecide(table)
        fresh = stage_cls(config_cls(**second)).redecide(table)
    again = stage_cls(config_cls(**second)).redecide(scored)
    assert again.to_pylist() == fresh.to_pylist()
    assert again.column("drop_reason").to_pylist() != scored.column("drop_reason").to_pylist()


def _listing(root) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_whatif_equals_what_the_run_then_does_and_writes_nothing(demo_corpus, tmp_path, capsys):
    from vtcurate.cli import main
    from vtcurate.errors import UserError
    from vtcurate.pipeline.decisions import whatif, whatif_run
    from vtcurate.pipeline.stats import funnel_json, load_stats
    from vtcurate.report.answer_key import evaluate_answer_key
    from vtcurate.report.collect import collect

    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(_config(0.9), manifest, tmp_path / "run", runner="local")
    before = _listing(tmp_path / "run")
    stricter = ["clip_filter.thresholds.*.value=0.5", "langid.min_length.en=6"]
    predicted, dropped = whatif_run(tmp_path / "run", stricter)
    assert predicted == whatif(tmp_path / "run", stricter)
    assert _listing(tmp_path / "run") == before  # nothing written
    assert all(s["unscored"] == 0 for s in predicted)  # stricter: every row reaching a stage was scored there
    with pytest.raises(UserError, match=r"\['clip_filter.aggregate'\] are scoring keys"):
        whatif(tmp_path / "run", ["clip_filter.aggregate=max"])
    assert main(["whatif", str(tmp_path / "run"), "--sweep", "clip_filter.thresholds.*.value=0.9,0.5,0.25",
                 "--json"]) == 0  # fmt: skip
    sweep = json.loads(capsys.readouterr().out)
    assert [row["kept"] for row in sweep] == sorted((row["kept"] for row in sweep), reverse=True)
    own = collect(tmp_path / "run")["answer_key"]  # the run's own value: its report's answer key
    assert sweep[0]["answer_key"]["planted_caught"] == own["summary"].get("caught", 0) > 0
    assert sweep[0]["answer_key"]["clean_lost"] == len(own["clean_wrongly_dropped"])
    assert sweep[0]["kept"] == load_stats(tmp_path / "run")[-1]["kept"]  # the run's own value: as it is
    run_pipeline(_config(0.5, "langid.min_length.en=6"), manifest, tmp_path / "run", runner="local")
    done = funnel_json(load_stats(tmp_path / "run"))
    keys = ("stage", "rows_in", "kept", "rejected", "rejected_by_reason")
    assert [{k: s[k] for k in keys} for s in predicted] == [{k: s[k] for k in keys} for s in done]
    after = collect(tmp_path / "run")["answer_key"]  # and every planted case's fate was predicted
    rd = RunDir(tmp_path / "run")
    finished = [s["stage"] for s in done]
    assert evaluate_answer_key(rd, Path(after["file"]), finished, dropped)["cases"] == after["cases"]
