"""A real Ray cluster on loopback: a head and a worker node; the pipeline runs on both, the worker
node is killed in the middle of a stage, and the run still completes with every clip once."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import CPU_STAGES

from helpers import assert_complete_and_unique, vtcurate_cmd
from vtcurate.pipeline.rundir import RunDir

OBJECT_STORE = 150 * 2**20  # small: this machine has 2 CPUs and the test starts two nodes


@pytest.mark.slow
def test_worker_node_killed_mid_stage(demo_corpus, cpu_run, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "object_store_memory": OBJECT_STORE, "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=2, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        run_dir = tmp_path / "run"
        # partitions of 2 rows: many more partitions than actors, so every actor is busy when the node dies
        overrides = ["partition_rows=2", "report.enabled=false", CPU_STAGES]
        cmd = vtcurate_cmd(run_dir, demo_corpus / "manifest.jsonl", *overrides, runner="ray")
        address = cluster.address
        cmd += ["--ray-address", address]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kept = RunDir(run_dir).stage("keyframes").kept
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and len(list(kept.glob("part-*"))) < 5:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the worker node could be killed"
        cluster.remove_node(worker)
        assert not RunDir(run_dir).stage("keyframes").done  # the node died in the middle of the stage
        assert proc.wait(timeout=300) == 0
    finally:
        cluster.shutdown()
    assert_complete_and_unique(run_dir, cpu_run)
    stats = {s: json.loads(RunDir(run_dir).stage(s).stats.read_text()) for s in ("ingest", "keyframes")}
    assert len(stats["ingest"]["worker_nodes"]) == 2  # work landed on both nodes
    assert len(stats["keyframes"]["worker_nodes"]) == 2  # including the stage the worker node died in
    info = json.loads(RunDir(run_dir).run_json.read_text())
    assert info["runner"]["address"] == address and info["runner"]["nodes"] == 2
