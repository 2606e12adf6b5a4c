"""A real Ray cluster on loopback: a head and a worker node; the pipeline runs on both, the worker
node is killed in the middle of a stage, and the run still completes with every clip once.  And a
heterogeneous one: a stage that needs a resource only one node has runs there alone."""

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
    """Every key-frame partition holds (a `hold` fault) until the test releases it; the test waits
    until the worker node holds one, removes that node, releases the rest, and checks that each
    partition caught in flight there was redone on the head node, with the reference's shards."""
    import pyarrow.parquet as pq
    from ray.cluster_utils import Cluster

    from vtcurate.pipeline.faults import MARKERS, RELEASE
    from vtcurate.pipeline.partition import NODE_KEY

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "object_store_memory": OBJECT_STORE, "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=2, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        head = cluster.head_node.node_id
        run_dir = tmp_path / "run"
        holds = ", ".join(f"{{stage: keyframes, partition: {i}, action: hold}}" for i in range(64))
        overrides = ["partition_rows=2", "report.enabled=false", *CPU_STAGES, f"faults=[{holds}]"]
        cmd = vtcurate_cmd(run_dir, demo_corpus / "manifest.jsonl", *overrides, runner="ray")
        address = cluster.address
        cmd += ["--ray-address", address]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        markers = run_dir / MARKERS

        def held_on_worker() -> list[str]:  # partitions the worker node holds, by their markers
            return [p.name.split("-")[1] for p in markers.glob("keyframes-*-hold")
                    if p.read_text() == worker.node_id]  # fmt: skip

        deadline = time.monotonic() + 300  # a hang guard, not a timing assumption
        while not held_on_worker() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        caught = held_on_worker()
        assert caught, f"no key-frame partition reached the worker node (exit {proc.poll()})"
        cluster.remove_node(worker)
        (markers / RELEASE).touch()
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:]
    finally:
        cluster.shutdown()
    assert_complete_and_unique(run_dir, cpu_run(2))
    kept = RunDir(run_dir).stage("keyframes").kept
    for part in caught:  # in flight on the removed node, finished on the head
        writer = pq.read_schema(kept / f"part-{int(part):05d}.parquet").metadata[NODE_KEY].decode()
        assert writer == head, (part, writer)
    stats = json.loads(RunDir(run_dir).stage("ingest").stats.read_text())
    assert len(stats["worker_nodes"]) == 2  # work landed on both nodes
    info = json.loads(RunDir(run_dir).run_json.read_text())
    assert info["runner"]["address"] == address and info["runner"]["nodes"] == 2


@pytest.mark.slow
def test_a_stage_needing_a_custom_resource_runs_only_where_it_is(demo_corpus, cpu_run, tmp_path):
    """keyframes asks for a `decoder` resource that only the worker node advertises: every
    key-frame partition lands there, and the run completes with the reference's shards."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "object_store_memory": OBJECT_STORE, "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=2, object_store_memory=OBJECT_STORE, resources={"decoder": 1})
        cluster.wait_for_nodes()
        run_dir = tmp_path / "run"
        overrides = ["partition_rows=8", "report.enabled=false", *CPU_STAGES,
                     "ray.stage_resources={keyframes: {resources: {decoder: 0.5}}}"]  # fmt: skip
        cmd = [*vtcurate_cmd(run_dir, demo_corpus / "manifest.jsonl", *overrides, runner="ray"),
               "--ray-address", cluster.address]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    finally:
        cluster.shutdown()
    stats = {s: json.loads(RunDir(run_dir).stage(s).stats.read_text()) for s in ("ingest", "keyframes")}
    assert stats["keyframes"]["worker_nodes"] == [worker.node_id]
    assert stats["keyframes"]["workers"]["resources"] == {"decoder": 0.5}
    assert json.loads(RunDir(run_dir).run_json.read_text())["runner"]["nodes"] == 2
    assert_complete_and_unique(run_dir, cpu_run(8))
