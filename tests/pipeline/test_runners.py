"""Runner parity: the same input gives the same kept clip ids and the same shard bytes on every runner."""

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import CONFIGS, shard_digests
from vtcurate.config import FLOW
from vtcurate.pipeline.partition import Op
from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.runners import fuse, group_resources, pool_sizes
from vtcurate.stages.base import Resources, Stage, with_decisions


def _kept_ids(run_dir, stage):
    return sorted(
        i
        for p in RunDir(run_dir).stage(stage).kept_parts()
        for i in pq.read_table(p, columns=["clip_id"]).column("clip_id").to_pylist()
    )


def _op(name: str, tmp_path, **res) -> Op:
    stage = CountingStage(None)
    stage.name = name
    return Op(stage, "run", str(tmp_path / "in"), str(tmp_path / name), resources=Resources(**res))


@pytest.mark.parametrize(
    "cpus, reserve, stages, expected",
    [
        # a 2-CPU laptop, one stage: two actors, each asking for half a CPU, one CPU left over
        (2, 1.0, [{"num_cpus": 1.0}], [(2, 0.5)]),
        # three stages streaming at once: every pool can grow to the machine, their requests shrink
        (2, 0.25, [{"num_cpus": 1.0}] * 3, [(2, 0.2916)] * 3),
        (16, 1.0, [{"num_cpus": 1.0}], [(16, 0.9375)]),
        (16, 1.0, [{"num_cpus": 1.0, "workers": 4}], [(4, 1.0)]),  # capped: fits, not scaled
        (16, 0.0, [{"num_cpus": 4.0}, {"num_cpus": 1.0, "num_gpus": 1.0}], [(4, 3.5555), (2, 0.8888)]),
    ],
)
def test_pools_fit_the_cluster_together(cpus, reserve, stages, expected, tmp_path):
    """Whatever the autoscaler does, all pools at their largest never ask for more CPUs than the
    cluster has beside the reserve (a pool holding every CPU hangs Ray Data on 2 CPUs)."""
    cluster = {"CPU": cpus, "GPU": 2}
    groups = [[_op(f"s{i}", tmp_path, **res)] for i, res in enumerate(stages)]
    pools = pool_sizes(groups, cluster, reserve, n_parts=100)
    assert [(p["workers"], p["cpu_request"]) for p in pools] == expected
    assert sum(p["workers"] * p["cpu_request"] for p in pools) <= max(cpus - reserve, 0.1 * cpus) + 1e-6


def test_pools_never_exceed_the_partitions_or_a_missing_resource(tmp_path):
    from vtcurate.errors import UserError

    pools = pool_sizes([[_op("a", tmp_path)]], {"CPU": 16}, 1.0, n_parts=3)
    assert pools[0]["workers"] == 3
    with pytest.raises(UserError, match="needs 1 decoder per worker; the cluster has 0"):
        pool_sizes([[_op("a", tmp_path, resources={"decoder": 1})]], {"CPU": 16}, 1.0, n_parts=3)


def test_fusion_groups_consecutive_stages_of_one_kind(tmp_path):
    ops = [_op("a", tmp_path), _op("b", tmp_path, num_cpus=0.5), _op("g", tmp_path, num_gpus=1.0),
           _op("c", tmp_path), _op("d", tmp_path, resources={"decoder": 1}), _op("e", tmp_path)]  # fmt: skip
    assert [[op.stage.name for op in g] for g in fuse(ops)] == [["a", "b"], ["g"], ["c"], ["d"], ["e"]]
    assert group_resources(fuse(ops)[0]).num_cpus == 1.0


def _rejections(run_dir, stage):
    from vtcurate.storage import read_rows

    rows = read_rows(RunDir(run_dir).stage(stage).rejected_parts(), ["clip_id", "drop_reason", "drop_detail"])
    return sorted((r["clip_id"], r["drop_reason"], r["drop_detail"]) for r in rows)


def _assert_same_run(run_dir, local_run, runner):
    for stage in FLOW:
        assert _kept_ids(run_dir, stage) == _kept_ids(local_run, stage), stage
        assert _rejections(run_dir, stage) == _rejections(local_run, stage), stage  # and why
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

    for i in range(6):
        src = tmp_path / "in" / f"part-{i:05d}.parquet"
        src.parent.mkdir(exist_ok=True)
        pq.write_table(pa.table({"clip_id": [f"c{i}-{j}" for j in range(3)]}), src)
    op = _op("ingest", tmp_path, batch_size=2)
    SETUPS.clear()
    with BeamRunner(BeamConfig(), tmp_path / "_beam") as runner:
        parts = [f"part-{i:05d}" for i in range(6)]
        results = sorted((r for rs in runner.run_segment([op], parts) for r in rs), key=lambda r: r.part)
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


class Marking(Stage):
    """Writes a marker file per setup() and teardown() call, from whichever process runs it."""

    name = "langid"

    def __init__(self, folder: str) -> None:
        super().__init__(None)
        self.folder = folder

    def setup(self) -> None:
        Path(self.folder, f"setup-{os.getpid()}").touch()

    def teardown(self) -> None:
        Path(self.folder, f"teardown-{os.getpid()}").touch()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return with_decisions(batch, [None] * batch.num_rows, [None] * batch.num_rows)


@pytest.mark.slow
def test_ray_workers_set_up_and_tear_down_their_stages(tmp_path):
    """Each Ray actor sets its stage up once and tears it down when the pool shuts down, as the
    local and Beam runners do."""
    from vtcurate.config import RayConfig
    from vtcurate.pipeline.runners import RayRunner

    parts = [f"part-{i:05d}" for i in range(4)]
    for part in parts:
        (tmp_path / "in").mkdir(exist_ok=True)
        table = pa.table({"clip_id": [f"{part}-{j}" for j in range(3)]})
        pq.write_table(table, tmp_path / "in" / f"{part}.parquet")
    marks = tmp_path / "marks"
    marks.mkdir()
    op = Op(Marking(str(marks)), "run", str(tmp_path / "in"), str(tmp_path / "out"))
    import ray

    here = Path(__file__).resolve()  # the actors unpickle Marking from this module: let them import it
    path = os.pathsep.join(str(p) for p in (here.parent, here.parents[1], here.parents[2]))
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    with RayRunner(RayConfig()) as runner:
        results = [r for rs in runner.run_segment([op], parts) for r in rs]
        import time

        deadline = time.monotonic() + 30  # teardown runs as the actors exit, after the last result
        while time.monotonic() < deadline and len(list(marks.glob("teardown-*"))) < len(
            list(marks.glob("setup-*"))
        ):
            time.sleep(0.2)
    ray.shutdown()
    assert sorted(r.part for r in results) == parts and all(r.kept == 3 for r in results)
    setups = {p.name.split("-")[1] for p in marks.glob("setup-*")}
    teardowns = {p.name.split("-")[1] for p in marks.glob("teardown-*")}
    assert setups and setups == teardowns and str(os.getpid()) not in setups  # in the actors, once each


def test_a_resource_no_node_has_fails_before_any_work(demo_corpus, demo_llm, tmp_path, monkeypatch):
    """keyframes asks for a `decoder` the (fake, 2-CPU) cluster lacks, in the last of three
    segments: the run stops naming the stage before ingest has written a partition."""
    from vtcurate.config import load_config
    from vtcurate.errors import UserError
    from vtcurate.pipeline import executor
    from vtcurate.pipeline.runners import LocalRunner

    class TwoCpuCluster(LocalRunner):
        def pools(self, ops, n_parts):
            return pool_sizes([[op] for op in ops], {"CPU": 2.0}, 1.0, n_parts)

    monkeypatch.setattr(executor, "make_runner", lambda *a: TwoCpuCluster())
    overrides = ["stages=[ingest, langid, keyframes]", "ray.materialize_every_stage=true", *demo_llm,
                 "ray.stage_resources={keyframes: {resources: {decoder: 1}}}"]  # fmt: skip
    config, manifest = load_config(CONFIGS / "demo.yaml", overrides), str(demo_corpus / "manifest.jsonl")
    with pytest.raises(UserError, match="keyframes needs 1 decoder per worker; the cluster has 0"):
        executor.run_pipeline(config, manifest, tmp_path, runner="local")
    assert not list(tmp_path.glob("stages/*/kept/*.parquet"))
