"""One step of one stage over one partition: the unit of work every runner schedules.

An `Op` is a stage in one of three modes: `run` (score and decide; a global_plan stage whose plan
needs no scores applies its static plan at once), `score` (a global_plan stage before its run-wide
plan) or `apply` (decide a scored partition by the plan; no model).  Runners
chain a segment's ops per partition: each op takes the previous op's output table in memory, or,
when it starts the chain (a resumed run, or after a barrier), reads its input from disk and joins
the key-frames back from the frame store.  It calls the stage in batches of its declared size,
checks that every row came back in order, and writes rejected rows, the stage's own per-partition
output (write_partition) and kept rows, atomically and in that order: the kept file marks the
partition done.  A batch whose call raises is retried row by row, so one bad row is rejected with
the error as its reason instead of failing the batch.
"""

from __future__ import annotations

import itertools
import json
import math
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vtcurate.config import FaultSpec
from vtcurate.pipeline.faults import arm, fire
from vtcurate.stages.base import DROP_REASON, Resources, Stage, column, with_decisions
from vtcurate.storage import FRAMES, attach_frames, without_frames, write_json, write_parquet

STAGE_ERROR = "stage_error"
NODE_KEY = b"vtcurate.node"  # parquet metadata of a done marker: the cluster node that wrote it
MODES = ("run", "score", "apply")


@dataclass(frozen=True)
class PartitionResult:
    stage: str
    mode: str
    part: str
    rows_in: int
    kept: int
    rejected: int
    seconds: float
    cpu_s: float  # CPU time of the worker process on this partition
    peak_rss_mb: float  # the worker process's peak resident memory so far
    node: str | None = None  # the cluster node that ran it (Ray)
    resumed: bool = False  # finished by an earlier invocation: skipped

    def as_dict(self) -> dict:
        return asdict(self)


class ConservationError(RuntimeError):
    """A stage returned a different set of rows than it was given: a bug in the stage."""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _call_rows(stage: Stage, batch: pa.Table) -> pa.Table:
    """Row-by-row fallback after a batch failed: isolate the rows that raise."""
    if batch.num_rows == 0:
        return with_decisions(batch, [], [])
    outs = []
    for i in range(batch.num_rows):
        row = batch.slice(i, 1)
        try:
            outs.append(stage(row))
        except Exception as err:  # noqa: BLE001 - any error of one row becomes its drop reason
            frame = traceback.extract_tb(err.__traceback__)[-1]
            detail = f"{type(err).__name__}: {err} ({Path(frame.filename).name}:{frame.lineno})"
            outs.append(with_decisions(row, [STAGE_ERROR], [detail[:500]]))
    return pa.concat_tables(outs, promote_options="permissive")


def apply_stage(stage: Stage, table: pa.Table, batch_size: int | None = None) -> pa.Table:
    batch_size = batch_size or stage.resources.batch_size
    outs = []
    # an empty partition still goes through the stage once, so its outputs have the stage's schema
    for offset in range(0, max(table.num_rows, 1), max(1, batch_size)):
        batch = table.slice(offset, batch_size)
        try:
            out = stage(batch)
        except Exception:  # noqa: BLE001 - retried per row to find the culprit
            out = _call_rows(stage, batch)
        outs.append(out)
    out = pa.concat_tables(outs, promote_options="permissive")
    check_rows(stage, table, out)
    return out


def check_rows(stage: Stage, table: pa.Table, out: pa.Table, step: str = "the stage") -> None:
    """Every row came back once and in order; a splits_rows stage: each input row came back
    rejected as itself, or as one or more rows naming it as their parent, in order, ids unique."""
    ids_in, ids_out = table.column("clip_id").to_pylist(), out.column("clip_id").to_pylist()
    if not stage.splits_rows:
        if ids_out != ids_in:
            raise ConservationError(
                f"stage {stage.name}: {step} returned {out.num_rows} rows for {table.num_rows}, "
                "or reordered them"
            )
        return
    # a row whose call raised comes back as itself, rejected, without the stage's columns
    owners = [p if p is not None else c for p, c in zip(column(out, "parent_id"), ids_out)]
    if [k for k, _ in itertools.groupby(owners)] != ids_in or len(set(ids_out)) != len(ids_out):
        raise ConservationError(
            f"stage {stage.name}: {step} returned {out.num_rows} rows for {table.num_rows} videos "
            "that do not each name one input video, in order, once, with unique clip ids"
        )


@dataclass
class Op:
    """A stage in one mode over the partitions of one stage directory (plain data + the stage,
    so it pickles to any worker)."""

    stage: Stage
    mode: str
    source: str  # folder of the partitions this op reads when no table is handed to it
    out: str  # the stage's directory
    frames: str | None = None  # the key-frame store, to join frames to rows read from disk
    plan: str | None = None  # apply: the plan's JSON file
    static_plan: dict | None = None  # run: a global_plan stage's plan that needs no scores
    resources: Resources = Resources()  # what one worker asks of the cluster
    faults: tuple[FaultSpec, ...] = ()
    run_root: str = ""
    model_store: tuple[str, str] | None = None  # (models.store, models.node_cache): weights come from there

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown op mode {self.mode!r}")

    @property
    def label(self) -> str:
        return self.stage.name if self.mode == "run" else f"{self.stage.name} ({self.mode})"

    @property
    def loads_models(self) -> bool:
        return self.mode != "apply"

    def done_marker(self, part: str) -> Path:
        """The file whose presence says this op finished `part` (written last)."""
        folder = "scored" if self.mode == "score" else "kept"
        return Path(self.out) / folder / f"{part}.parquet"

    def read_input(self, part: str) -> pa.Table:
        table = pq.read_table(Path(self.source) / f"{part}.parquet")
        return attach_frames(table, Path(self.frames) / f"{part}.parquet") if self.frames else table

    @cached_property
    def _plan(self) -> dict:
        return json.loads(Path(self.plan).read_text("utf-8"))

    def setup(self) -> None:
        if self.loads_models:
            if self.model_store:
                from vtcurate.models.store import use_store

                use_store(*self.model_store)
            self.stage.setup()

    def teardown(self) -> None:
        if self.loads_models:
            self.stage.teardown()

    @property
    def threads(self) -> int:
        """torch threads of this op: the CPUs its stage asks for, in every runner (Ray would give
        an actor 1, the local runner the whole machine), so that model outputs, whose last bits
        depend on how a sum is split over threads, and so the shards do not depend on the runner."""
        return max(1, math.ceil(self.resources.num_cpus))

    def process(self, part: str, table: pa.Table | None, node: str | None = None):
        """Run this op over partition `part`: (its kept rows for the next op, or None; the result).
        `table`: the previous op's output in memory; None reads the input from disk."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        torch = sys.modules.get("torch")  # set only where the stage uses torch (it imports it lazily)
        if torch is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        marker = self.done_marker(part)
        if marker.exists():  # finished earlier: by an earlier invocation, or before a lost result was redone
            writer = (pq.read_schema(marker).metadata or {}).get(NODE_KEY)
            return None, PartitionResult(self.stage.name, self.mode, part, 0, 0, 0, 0.0, 0.0, peak_rss_mb(),
                                         writer.decode() if writer else node, resumed=True)  # fmt: skip
        if table is None:
            table = self.read_input(part)
        if self.mode == "apply":
            out = self.stage.apply_plan(table, self._plan)
            check_rows(self.stage, table, out, "apply_plan")
        else:
            out = apply_stage(self.stage, table, self.resources.batch_size)
            if self.static_plan is not None:
                out = self.stage.apply_plan(out, self.static_plan)
        fault = arm(list(self.faults), self.stage.name, Path(self.run_root), part)
        # the frames are stored once, by the stage that makes them; later stages write rows without
        stored = out if FRAMES in self.stage.output_columns else without_frames(out)
        dropped = pc.is_valid(out.column(DROP_REASON))
        kept = out.filter(pc.invert(dropped))
        n_rejected = out.num_rows - kept.num_rows
        passed_on = None
        if node:  # the done marker names the node that wrote it (a redone lost result reports it)
            stored = stored.replace_schema_metadata(
                {**(stored.schema.metadata or {}), NODE_KEY: node.encode()}
            )
        if self.mode == "score":
            fire(fault, node)
            write_parquet(stored, self.done_marker(part))
        else:
            out_dir = Path(self.out)
            write_parquet(stored.filter(dropped), out_dir / "rejected" / f"{part}.parquet")
            extra = self.stage.write_partition(kept, part)
            if extra is not None:
                write_json(extra, out_dir / "outputs" / f"{part}.json")  # StageDir.outputs
            fire(fault, node)
            write_parquet(stored.filter(pc.invert(dropped)), self.done_marker(part))
            passed_on = kept
        result = PartitionResult(
            self.stage.name, self.mode, part, table.num_rows, kept.num_rows, n_rejected,
            time.perf_counter() - t0, time.process_time() - cpu0, peak_rss_mb(), node,
        )  # fmt: skip
        return passed_on, result
