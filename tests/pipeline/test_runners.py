"""Runner parity: the same input gives the same kept clip ids and the same shard bytes on every runner."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import shard_digests
from vtcurate.config import FLOW
from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.runners import pool_size
from vtcurate.stages.base import Resources, Stage, with_decisions


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


def _assert_same_run(run_dir, local_run, runner):
    for stage in FLOW:
        assert _kept_ids(run_dir, stage) == _kept_ids(local_run, stage), stage
    assert shard_digests(run_dir) == shard_digests(local_run)
    assert json.loads(RunDir(run_dir).run_json.read_text())["runner"]["runner"] == runner


@pytest.mark.slow
def test_ray_runner_matches_local(local_run, demo_corpus, demo_config, tmp_path):
    from vtcurate.pipeline.executor import run_pipeline

    ray_dir = tmp_path / "ray"
    run_pipeline(demo_config, str(demo_corpus / "manifest.jsonl"), ray_dir, runner="ray")
    _assert_same_run(ray_dir, local_run, "ray")


def test_beam_runner_matches_local(local_run, demo_corpus, demo_config, tmp_path):
    """Every stage as a Beam ParDo on the DirectRunner: the same kept ids and shard bytes as the
    local runner (which the test above proves equal to Ray)."""
    from vtcurate.pipeline.executor import run_pipeline

    beam_dir = tmp_path / "beam"
    run_pipeline(demo_config, str(demo_corpus / "manifest.jsonl"), beam_dir, runner="beam")
    _assert_same_run(beam_dir, local_run, "beam")
    assert not (beam_dir / "_beam").exists()  # the results sink is cleaned up


SETUPS: list[int] = []


class CountingStage(Stage):
    """Counts setup() calls (in this process: the DirectRunner runs DoFns in-process)."""

    name = "ingest"

    @property
    def resources(self) -> Resources:
        return Resources(batch_size=2)

    def setup(self) -> None:
        SETUPS.append(1)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return with_decisions(batch, [None] * batch.num_rows, [None] * batch.num_rows)


def test_beam_dofn_sets_the_stage_up_once_per_worker(tmp_path):
    from vtcurate.config import BeamConfig
    from vtcurate.pipeline.beam_runner import BeamRunner
    from vtcurate.pipeline.partition import PartitionTask

    tasks = []
    for i in range(6):
        src = tmp_path / "in" / f"part-{i:05d}.parquet"
        src.parent.mkdir(exist_ok=True)
        pq.write_table(pa.table({"clip_id": [f"c{i}-{j}" for j in range(3)]}), src)
        out = tmp_path / "out"
        tasks.append(
            PartitionTask(src.stem, str(src), str(out / "kept" / src.name), str(out / "rej" / src.name))
        )
    SETUPS.clear()
    with BeamRunner(BeamConfig(), tmp_path / "_beam") as runner:
        results = sorted(runner.map(CountingStage(None), tasks), key=lambda r: r.part)
    assert [(r.part, r.rows_in, r.kept) for r in results] == [(f"part-{i:05d}", 3, 3) for i in range(6)]
    assert SETUPS == [1]  # one DoFn instance in-process: set up once for six partitions


def test_beam_options_pass_through():
    from vtcurate.pipeline.beam_runner import option_args

    options = {"runner": "FlinkRunner", "flink_master": "localhost:8081", "save_main_session": True,
               "experiments": ["a", "b"], "streaming": False}  # fmt: skip
    assert option_args(options) == [
        "--runner=FlinkRunner", "--flink_master=localhost:8081", "--save_main_session",
        "--experiments=a", "--experiments=b",
    ]  # fmt: skip
