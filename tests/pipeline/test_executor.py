"""End to end on the demo corpus with the local runner: conservation, decisions, shards, resume."""

import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest

from vtcurate.config import FLOW
from vtcurate.demo.check import check
from vtcurate.demo.corpus import EXCERPT_OF, REUPLOAD_OF, SAME_CAPTION_AS
from vtcurate.pipeline.executor import RunDirConflict, run_pipeline
from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.stats import load_stats
from vtcurate.storage import read_rows

STAGES = list(FLOW)


def _ids(paths):
    return [i for p in paths for i in pq.read_table(p, columns=["clip_id"]).column("clip_id").to_pylist()]


def test_conservation_at_every_stage(local_run, demo_corpus):
    rd = RunDir(local_run)
    manifest_rows = len((demo_corpus / "manifest.jsonl").read_text().splitlines())
    previous_kept = None
    for s in load_stats(local_run):
        sdir = rd.stage(s["stage"])
        kept, rejected = _ids(sdir.kept_parts()), _ids(sdir.rejected_parts())
        assert (len(kept), len(rejected)) == (s["kept"], s["rejected"])
        assert sum(s["rejected_by_reason"].values()) == s["rejected"]
        if s["stage"] == "split":  # videos in, clips out: each video split into clips or rejected whole
            rows = read_rows(sdir.kept_parts() + sdir.rejected_parts(), ["clip_id", "parent_id"])
            whole = [r["clip_id"] for r in rows if r["parent_id"] is None]
            split = {r["parent_id"] for r in rows if r["parent_id"] is not None}
            assert sorted(whole + sorted(split)) == sorted(previous_kept)
            assert (s["videos_in"], s["videos_split"], s["videos_rejected"]) == (
                s["rows_in"],
                len(split),
                len(whole),
            )
            assert s["kept"] > s["rows_in"]  # the demo's long videos became several clips each
            assert len(set(kept + rejected)) == len(kept + rejected)
            previous_kept = kept
            continue
        assert s["rows_in"] == s["kept"] + s["rejected"]
        if previous_kept is None:
            assert s["rows_in"] == manifest_rows
            assert len(_ids(sorted(rd.ingest_input().glob("part-*.parquet")))) == manifest_rows
        else:
            # the clip ids in = kept + rejected, each exactly once
            assert sorted(kept + rejected) == sorted(previous_kept)
        previous_kept = kept
    assert [s["stage"] for s in load_stats(local_run)] == STAGES


def test_every_rejection_has_a_reason(local_run):
    rd = RunDir(local_run)
    for name in STAGES:
        for path in rd.stage(name).rejected_parts():
            for row in pq.read_table(path, columns=["drop_reason", "drop_detail"]).to_pylist():
                assert row["drop_reason"] and row["drop_detail"]
        for path in rd.stage(name).kept_parts():
            assert (
                pq.read_table(path, columns=["drop_reason"]).column("drop_reason").null_count
                == pq.ParquetFile(path).metadata.num_rows
            )


def test_planted_cases_match_the_answer_key(local_run, demo_corpus):
    lines, failures = check(demo_corpus, local_run)
    assert failures == [], "\n".join(lines)
    assert sum("caught" in line for line in lines) == 16
    assert sum("not_enforced" in line for line in lines) == 2  # random CLIP weights: scored, not dropped
    dedup = read_rows(RunDir(local_run).stage("dedup").rejected_parts(), ["clip_id", "duplicate_of"])
    assert {r["clip_id"]: r["duplicate_of"] for r in dedup} == {
        "planted-excerpt": f"clip{EXCERPT_OF:04d}",
        "planted-reupload": f"clip{REUPLOAD_OF:04d}",  # the original kept, not its re-upload
        "planted-same-caption": f"clip{SAME_CAPTION_AS:04d}",
    }


def test_shards_and_index(local_run):
    rd = RunDir(local_run)
    index = json.loads((rd.shards / "index.json").read_text())
    kept = load_stats(local_run)[-1]["kept"]
    assert index["samples"] == kept == sum(s["samples"] for s in index["shards"])
    assert sum(index["splits"].values()) == kept and set(index["splits"]) == {"train", "val"}
    for shard in index["shards"]:
        path = rd.shards / shard["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        assert path.stat().st_size == shard["bytes"]
        assert shard["path"].startswith(f"{shard['split']}/{shard['split']}-")
        assert sum(shard["languages"].values()) == shard["samples"]


def test_key_frames_are_stored_once(local_run):
    """Only the keyframes stage writes the key-frame bytes; every later stage's partitions leave
    them out, and the run directory holds about twice the shards' bytes (the frame store and the
    tars), not a copy per stage."""
    rd = RunDir(local_run)
    for name in STAGES:
        sdir = rd.stage(name)
        parts = [*sdir.kept_parts(), *sdir.rejected_parts(), *sorted(sdir.scored.glob("*.parquet"))]
        assert parts, name
        for path in parts:
            assert ("frames" in pq.read_schema(path).names) == (name == "keyframes"), path
    storage = json.loads(rd.run_json.read_text())["storage"]
    assert storage["kept_clips"] == load_stats(local_run)[-1]["kept"]
    index = json.loads((rd.shards / "index.json").read_text())
    assert storage["shard_bytes"] == sum(s["bytes"] for s in index["shards"])
    # each of the twelve stages' partitions adds its rows' other columns (about 0.15 of the shards'
    # bytes on the demo's 8-row partitions, twice that for the run-wide-plan stages, which also keep
    # their scored rows); a copy of the key-frames would add about 0.5 per stage
    assert 1.5 < storage["run_to_shard_bytes"] < 4.0, storage


def test_run_json_records_config_versions_and_models(local_run):
    info = json.loads(RunDir(local_run).run_json.read_text())
    assert info["config"]["keyframes"]["num_frames"] == 8
    assert info["versions"]["pyarrow"] and info["versions"]["decord"]
    assert info["stages"]["langid"]["langid"]["sha256"]
    assert info["runner"]["runner"] == "local" and info["finished"]


def test_stats_summaries(local_run):
    stats = {s["stage"]: s for s in load_stats(local_run)}
    assert stats["langid"]["scores"]["lang_score"]["kept"]["min"] >= 0.3
    assert set(stats["langid"]["by_language"]) >= {"en", "zh", "fr", "ja", "ru"}
    assert stats["keyframes"]["by_language"]["zh"]["kept"] > 0
    assert stats["shard"]["shards"]["samples"] == stats["shard"]["kept"]


def test_rerun_skips_finished_stages(local_run, demo_corpus, demo_config):
    rd = RunDir(local_run)
    mtimes = {p: p.stat().st_mtime_ns for p in rd.root.rglob("*.parquet")}
    stats = run_pipeline(demo_config, str(demo_corpus / "manifest.jsonl"), local_run, runner="local")
    assert [s["stage"] for s in stats] == STAGES
    assert {p: p.stat().st_mtime_ns for p in rd.root.rglob("*.parquet")} == mtimes


def test_resume_redoes_only_missing_partitions(demo_corpus, demo_config, tmp_path):
    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(demo_config, manifest, tmp_path, runner="local")
    rd = RunDir(tmp_path)
    before = json.loads((rd.shards / "index.json").read_text())
    # as if the driver died in keyframes after some partitions, before the stage finished
    (rd.stage("keyframes").path / "_SUCCESS").unlink()
    rd.stage("keyframes").kept_parts()[-1].unlink()
    shutil.rmtree(rd.stage("shard").path)
    stats = {s["stage"]: s for s in run_pipeline(demo_config, manifest, tmp_path, runner="local")}
    assert stats["keyframes"]["resumed_partitions"] == stats["keyframes"]["partitions"] - 1
    after = json.loads((rd.shards / "index.json").read_text())
    assert [s["sha256"] for s in after["shards"]] == [s["sha256"] for s in before["shards"]]


def test_changed_config_does_not_resume(local_run, demo_corpus, demo_config):
    changed = demo_config.model_copy(update={"partition_rows": 3})
    with pytest.raises(RunDirConflict, match="partition_rows"):
        run_pipeline(changed, str(demo_corpus / "manifest.jsonl"), local_run, runner="local")


def test_stage_subsets_run_in_flow_order(demo_corpus, demo_config, tmp_path):
    from vtcurate.errors import UserError

    demo_config = demo_config.model_copy(update={"stages": ["ingest", "langid", "keyframes", "shard"]})
    manifest = str(demo_corpus / "manifest.jsonl")
    with pytest.raises(UserError, match="needs langid"):
        run_pipeline(demo_config, manifest, tmp_path, runner="local", stages=["ingest", "keyframes"])
    stats = run_pipeline(demo_config, manifest, tmp_path, runner="local", stages=["langid", "ingest"])
    assert [s["stage"] for s in stats] == ["ingest", "langid"]
    assert not RunDir(tmp_path).stage("keyframes").done
    stats = run_pipeline(demo_config, manifest, tmp_path, runner="local", stages=["keyframes", "shard"])
    assert [s["stage"] for s in stats] == ["keyframes", "shard"]
    assert RunDir(tmp_path).stage("shard").path.name == f"{FLOW.index('shard'):02d}_shard"
