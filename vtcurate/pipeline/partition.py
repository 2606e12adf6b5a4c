"""Run one stage over one partition: the unit of work every runner schedules.

Reads the partition, calls the stage in batches of its declared size, checks that every row came
back, and writes kept and rejected rows atomically.  A batch whose call raises is retried row by
row, so one bad row is rejected with the error as its reason instead of failing the batch.
"""

from __future__ import annotations

import json
import resource
import time
import traceback
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vtcurate.pipeline.atomic import write_parquet
from vtcurate.pipeline.faults import fire
from vtcurate.stages.base import DROP_REASON, Stage, with_decisions

STAGE_ERROR = "stage_error"


@dataclass(frozen=True)
class PartitionTask:
    part: str
    source: str
    kept: str
    rejected: str
    # run: call the stage, split kept/rejected.  score: call the stage, write every row to `kept`
    # (a global_plan stage's first step).  apply: apply the plan at `plan` to a scored partition.
    mode: str = "run"
    plan: str | None = None
    fault: dict | None = None  # an injected fault (vtcurate.pipeline.faults), tests only


@dataclass(frozen=True)
class PartitionResult:
    part: str
    rows_in: int
    kept: int
    rejected: int
    seconds: float
    cpu_s: float  # CPU time of the worker process on this partition
    peak_rss_mb: float  # the worker process's peak resident memory so far
    node: str | None = None  # the cluster node that ran it (Ray)

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


def apply_stage(stage: Stage, table: pa.Table) -> pa.Table:
    size = max(1, stage.resources.batch_size)
    outs = []
    # an empty partition still goes through the stage once, so its outputs have the stage's schema
    for offset in range(0, max(table.num_rows, 1), size):
        batch = table.slice(offset, size)
        try:
            out = stage(batch)
        except Exception:  # noqa: BLE001 - retried per row to find the culprit
            out = _call_rows(stage, batch)
        outs.append(out)
    out = pa.concat_tables(outs, promote_options="permissive")
    if out.column("clip_id").to_pylist() != table.column("clip_id").to_pylist():
        raise ConservationError(
            f"stage {stage.name} returned {out.num_rows} rows for {table.num_rows}, or reordered them"
        )
    return out


@lru_cache(maxsize=4)
def _load_plan(path: str, version: tuple[int, int]) -> dict:
    """The plan at `path`; `version` (mtime, size) keys the cache, so a rewritten plan is reread."""
    return json.loads(Path(path).read_text("utf-8"))


def run_partition(stage: Stage, task: PartitionTask) -> PartitionResult:
    t0, cpu0 = time.perf_counter(), time.process_time()
    table = pq.read_table(task.source)
    if task.mode == "apply":
        st = Path(task.plan).stat()
        out = stage.apply_plan(table, _load_plan(task.plan, (st.st_mtime_ns, st.st_size)))
        if out.num_rows != table.num_rows:
            raise ConservationError(f"stage {stage.name}: apply_plan changed the number of rows")
    else:
        out = apply_stage(stage, table)
    dropped = pc.is_valid(out.column(DROP_REASON))
    kept, rejected = out.filter(pc.invert(dropped)), out.filter(dropped)
    if task.mode == "score":
        fire(task.fault)
        write_parquet(out, Path(task.kept))
    else:
        write_parquet(rejected, Path(task.rejected))
        fire(task.fault)
        write_parquet(kept, Path(task.kept))  # written last: its presence marks the partition done
    return PartitionResult(
        task.part, table.num_rows, kept.num_rows, rejected.num_rows,
        time.perf_counter() - t0, time.process_time() - cpu0, peak_rss_mb(),
    )  # fmt: skip
