"""Runner parity: the same input gives the same kept clip ids on every runner."""

import pyarrow.parquet as pq
import pytest

from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.runners import pool_size


def _kept_ids(run_dir, stage):
    return sorted(
        i
        for p in RunDir(run_dir).stage(stage).kept_parts()
        for i in pq.read_table(p, columns=["clip_id"]).column("clip_id").to_pylist()
    )


@pytest.mark.parametrize(
    "total, reserve, per_worker, cap, expected",
    [
        (2, 1.0, 1.0, None, 1),  # a 2-CPU laptop: one actor, one CPU left for Ray Data tasks
        (2, 1.0, 0.5, None, 2),
        (1, 1.0, 1.0, None, 1),  # never zero actors
        (16, 1.0, 1.0, None, 15),
        (16, 1.0, 1.0, 4, 4),
        (16, 2.0, 4.0, None, 3),
    ],
)
def test_pool_leaves_room_for_ray_data_tasks(total, reserve, per_worker, cap, expected):
    assert pool_size(total, reserve, per_worker, cap) == expected


@pytest.mark.slow
def test_ray_runner_matches_local(local_run, demo_corpus, demo_config, tmp_path):
    from vtcurate.pipeline.executor import run_pipeline

    ray_dir = tmp_path / "ray"
    run_pipeline(demo_config, str(demo_corpus / "manifest.jsonl"), ray_dir, runner="ray")
    for stage in ("ingest", "langid", "keyframes", "shard"):
        assert _kept_ids(ray_dir, stage) == _kept_ids(local_run, stage), stage
    import json

    local_index = json.loads((RunDir(local_run).shards / "index.json").read_text())
    ray_index = json.loads((RunDir(ray_dir).shards / "index.json").read_text())
    assert [(s["path"], s["samples"]) for s in ray_index["shards"]] == [
        (s["path"], s["samples"]) for s in local_index["shards"]
    ]
    assert json.loads(RunDir(ray_dir).run_json.read_text())["runner"]["runner"] == "ray"
