"""A driver SIGKILLed in the middle of a stage leaves nothing that looks finished, and rerunning the
same command completes the run with every kept clip in the shards exactly once, byte-identical to
an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest
from conftest import CPU_STAGES

from helpers import assert_complete_and_unique, vtcurate_cmd
from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.stats import load_stats

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _run(cmd: list[str]) -> int:
    return subprocess.run(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode


def _partial_state(rd: RunDir, stage: str, partition: int) -> None:
    assert not (rd.stage(stage).path / "_SUCCESS").exists()
    kept, rejected = rd.stage(stage).part_files(f"part-{partition:05d}")
    assert rejected.exists() and not kept.exists()  # half-written partition: not done
    if stage == "shard":  # killed after the partition's tars were written: not yet in any index
        assert list(rd.shards.glob(f"*/*-{partition:05d}-*.tar")) and not (rd.shards / "index.json").exists()


@pytest.mark.parametrize(
    "stage, partition",
    [("keyframes", 1), ("rewrite", 1), ("shard", 1)],
    ids=["keyframes", "rewrite", "shard-tars"],
)
def test_driver_killed_mid_stage_resumes_to_identical_shards(
    stage, partition, local_run, demo_corpus, demo_llm, tmp_path
):
    """The local runner runs partitions in the driver, so a `die` fault SIGKILLs the driver itself
    at a chosen point: after a partition's rejected rows are written (for shard: and its tars) and
    before its kept rows."""
    run_dir = tmp_path / "run"
    cmd = vtcurate_cmd(
        run_dir, demo_corpus / "manifest.jsonl", "partition_rows=8", "report.enabled=false", *demo_llm,
        f"faults=[{{stage: {stage}, partition: {partition}, action: die}}]",
    )  # fmt: skip
    assert _run(cmd) == -signal.SIGKILL
    _partial_state(RunDir(run_dir), stage, partition)
    assert _run(cmd) == 0  # the same command: the fault fired once, the run resumes
    stats = {s["stage"]: s for s in load_stats(run_dir)}
    assert stats[stage]["resumed_partitions"] == partition  # the finished ones were not redone
    assert_complete_and_unique(run_dir, local_run)


@pytest.mark.slow
def test_ray_driver_killed_from_outside_resumes(demo_corpus, cpu_run, tmp_path):
    """SIGKILL the whole process group of a Ray-runner `vtcurate run` (driver and its embedded
    cluster) once key-frame partitions are being written, then rerun it."""
    run_dir = tmp_path / "run"
    overrides = ["partition_rows=4", "report.enabled=false", *CPU_STAGES]
    cmd = vtcurate_cmd(run_dir, demo_corpus / "manifest.jsonl", *overrides, runner="ray")
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    kept = RunDir(run_dir).stage("keyframes").kept
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not list(kept.glob("part-*.parquet")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-keyframes"
    family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in family:  # Ray's own processes may have left the group: end them by id
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    n_parts = len(list(RunDir(run_dir).ingest_input().glob("part-*.parquet")))
    assert not RunDir(run_dir).stage("keyframes").done and len(list(kept.glob("part-*"))) < n_parts
    assert _run(cmd) == 0
    assert_complete_and_unique(run_dir, cpu_run(4))
