"""Worker faults: a partition whose worker raises or dies is retried by Ray, once the fault has
fired the retry goes through, and the run gives the same shards as a run without faults."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CPU_STAGES

from helpers import CONFIGS, assert_complete_and_unique
from vtcurate.config import ConfigError, FaultSpec, load_config
from vtcurate.pipeline.faults import InjectedFault, arm, fire
from vtcurate.pipeline.stats import accounted, load_stats

FAULTS = (
    "faults=[{stage: ingest, partition: 0, action: die}, {stage: langid, partition: 1, action: raise},"
    " {stage: keyframes, partition: 2, action: die}, {stage: shard, partition: 1, action: raise}]"
)


def test_fault_specs_name_a_stage_and_a_partition():
    with pytest.raises(ConfigError, match="unknown stage 'keyframe'"):
        load_config(CONFIGS / "demo.yaml", ["faults=[{stage: keyframe, partition: 0, action: die}]"])
    with pytest.raises(ConfigError, match="faults.0.partition: Field required"):
        load_config(CONFIGS / "demo.yaml", ["faults=[{stage: shard, action: die}]"])


def test_a_fault_fires_once_per_run_directory(tmp_path):
    faults = [FaultSpec(stage="langid", partition=3, action="raise")]
    assert arm(faults, "langid", tmp_path, "part-00002") is None
    assert arm(faults, "keyframes", tmp_path, "part-00003") is None
    fault = arm(faults, "langid", tmp_path, "part-00003")
    with pytest.raises(InjectedFault):
        fire(fault)
    fire(fault)  # the retry goes through
    fire(arm(faults, "langid", tmp_path, "part-00003"))  # also from another process's arming


def test_a_hold_names_its_node_and_waits_for_the_release(tmp_path):
    import threading

    from vtcurate.pipeline.faults import RELEASE

    hold = [FaultSpec(stage="keyframes", partition=1, action="hold")]
    fault = arm(hold, "keyframes", tmp_path, "part-00001")
    marker = Path(fault["marker"])
    holder = threading.Thread(target=fire, args=(fault, "node-a"), daemon=True)
    holder.start()
    while not (marker.exists() and marker.read_text() == "node-a"):
        assert holder.is_alive(), "the hold returned before it wrote its marker"
        holder.join(0.01)
    assert holder.is_alive()  # held: no release yet
    fire(fault, "node-b")  # the retry elsewhere goes through at once, and keeps the first node
    assert marker.read_text() == "node-a"
    (tmp_path / "_faults" / RELEASE).touch()
    holder.join(30)  # a hang guard
    assert not holder.is_alive()


@pytest.mark.slow
def test_ray_retries_partitions_whose_worker_raised_or_died(demo_corpus, demo_llm, cpu_run, tmp_path):
    from vtcurate.pipeline.executor import run_pipeline

    config = load_config(
        CONFIGS / "demo.yaml", [*CPU_STAGES, "partition_rows=8", "report.enabled=false", FAULTS, *demo_llm]
    )
    run_pipeline(config, str(demo_corpus / "manifest.jsonl"), tmp_path, runner="ray")
    fired = sorted(p.name for p in (tmp_path / "_faults").iterdir())
    assert fired == ["ingest-0-die", "keyframes-2-die", "langid-1-raise", "shard-1-raise"]
    assert_complete_and_unique(tmp_path, cpu_run(8))
    for s in load_stats(tmp_path):
        assert accounted(s) == s["rows_in"]  # kept + rejected; split: videos split + rejected whole


@pytest.mark.slow
def test_without_retries_a_raising_worker_fails_the_run(demo_corpus, demo_llm, tmp_path):
    """The retries above are what makes it work: with none, the injected error ends the run."""
    from vtcurate.pipeline.executor import run_pipeline

    faults = "faults=[{stage: ingest, partition: 1, action: raise}]"
    config = load_config(
        CONFIGS / "demo.yaml", ["stages=[ingest]", "ray.max_task_retries=0", faults, *demo_llm]
    )
    with pytest.raises(Exception, match="injected fault"):
        run_pipeline(config, str(demo_corpus / "manifest.jsonl"), tmp_path, runner="ray")
