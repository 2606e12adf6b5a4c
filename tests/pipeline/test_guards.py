"""The row-count guards fire: a stage that drops, duplicates or reorders rows, a plan step that
changes the rows, and a stage folder whose partitions do not add up to its input each stop the
run with ConservationError instead of losing or doubling clips silently."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import CONFIGS
from vtcurate.pipeline.partition import ConservationError, Op, apply_stage
from vtcurate.stages.base import Resources, Stage, with_decisions


class Broken(Stage):
    """A stage that keeps every row but breaks the contract the way `how` says."""

    name = "langid"

    def __init__(self, how: str) -> None:
        super().__init__(None)
        self.how = how

    @property
    def resources(self) -> Resources:
        return Resources(batch_size=4)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.how == "drop":
            batch = batch.slice(1)
        elif self.how == "duplicate":
            batch = pa.concat_tables([batch, batch.slice(0, 1)])
        elif self.how == "reorder":
            batch = batch.take(list(reversed(range(batch.num_rows))))
        return with_decisions(batch, [None] * batch.num_rows, [None] * batch.num_rows)

    def apply_plan(self, table: pa.Table, plan: dict) -> pa.Table:
        return self(table)


def _table(n: int = 6) -> pa.Table:
    return pa.table({"clip_id": [f"c{i}" for i in range(n)], "caption": ["a cat"] * n})


@pytest.mark.parametrize("how", ["drop", "duplicate", "reorder"])
def test_a_stage_that_loses_doubles_or_reorders_rows_is_stopped(how):
    with pytest.raises(ConservationError, match="returned|reordered"):
        apply_stage(Broken(how), _table())
    assert apply_stage(Broken("none"), _table()).num_rows == 6  # the honest stage passes


@pytest.mark.parametrize("how", ["drop", "duplicate", "reorder"])
def test_a_plan_step_that_changes_the_rows_is_stopped(how, tmp_path):
    scored = tmp_path / "scored"
    scored.mkdir()
    pq.write_table(with_decisions(_table(), [None] * 6, [None] * 6), scored / "part-00000.parquet")
    (tmp_path / "plan.json").write_text("{}")
    op = Op(Broken(how), "apply", str(scored), str(tmp_path / "stage"), plan=str(tmp_path / "plan.json"))
    with pytest.raises(ConservationError, match="apply_plan"):
        op.process("part-00000", None)
    assert not op.done_marker("part-00000").exists()  # nothing looks finished


def test_a_stage_folder_that_does_not_add_up_is_stopped(demo_corpus, demo_llm, tmp_path):
    """A stray partition file in a stage's kept folder (left by another run) would add rows the
    stage never received: the executor's kept + rejected = rows-in check catches it."""
    from vtcurate.config import load_config
    from vtcurate.pipeline.executor import run_pipeline
    from vtcurate.pipeline.rundir import RunDir

    overrides = ["stages=[ingest, langid]", "report.enabled=false", *demo_llm]
    config = load_config(CONFIGS / "demo.yaml", overrides)
    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(config, manifest, tmp_path, runner="local", stages=["ingest"])
    rd = RunDir(tmp_path)
    stray = rd.stage("langid").kept / "part-09999.parquet"
    stray.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(rd.stage("ingest").kept_parts()[0]), stray)
    (rd.stage("langid").path / "_upstream").write_text("ingest")  # as if made from the same upstream
    with pytest.raises(ConservationError, match="langid: kept \\+ rejected != rows in"):
        run_pipeline(config, manifest, tmp_path, runner="local")
    assert not rd.stage("langid").done


def test_a_redone_result_reports_the_node_that_wrote_the_partition(tmp_path):
    """Ray redoes a finished task whose result was lost with its node: the op finds the partition
    done and reports the node its done marker names, so the stats still show where work ran."""
    source = tmp_path / "in"
    source.mkdir()
    pq.write_table(_table(), source / "part-00000.parquet")
    op = Op(Broken("none"), "run", str(source), str(tmp_path / "stage"))
    _, first = op.process("part-00000", None, node="worker-node")
    _, again = op.process("part-00000", None, node="head-node")
    assert (first.node, first.resumed) == ("worker-node", False)
    assert (again.node, again.resumed) == ("worker-node", True)
