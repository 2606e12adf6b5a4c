"""The stage contract.

A stage is cheap to construct and picklable; it loads models in `setup()`, once per worker.  Its
`__call__` takes a pyarrow Table and returns every row it was given, with its score columns added
and `drop_reason` / `drop_detail` set on the rows it rejects (null on kept rows).  Scoring and
deciding are separate methods so that a decision can be re-applied from the scores alone.
Stages know nothing of Ray or Beam: runners read `resources` and map stages over partitions.

A decision that needs the whole run (a top-fraction threshold, duplicate groups across
partitions) is made in three steps: `__call__` scores every partition, `plan(scored_parts)` reads
just the columns it needs from all of them in the driver and returns a small JSON-able plan, and
`apply_plan(table, plan)` decides each partition from it.  Stages that work so set `global_plan`;
the plan is the only point where the runners wait for every partition (a barrier).

A stage that sets `splits_rows` (split) may return several rows for one: each input row comes back
either once, rejected with `parent_id` null, or as one or more rows whose `parent_id` is its
`clip_id`, in input order; the row-count checks count videos for it.

Hooks the executor calls, so it treats no stage by name:
- `reads_manifest`: the stage starts the flow and reads the run's input (ingest);
- `reads_whole_input`: setup() reads a column of every input partition (a barrier before it);
- `write_partition(kept, part)`: on the worker, after a partition is decided (shard writes tars);
- `finalize(outputs)`: in the driver once every partition is done (shard merges index.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

DROP_REASON = "drop_reason"
DROP_DETAIL = "drop_detail"


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs, as plain data for the runners."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 64
    workers: int | None = None  # None: as many as the cluster allows
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per worker


class Stage:
    name: ClassVar[str]
    # Columns this stage adds to its input (checked against what it writes, by a test).
    output_columns: ClassVar[tuple[str, ...]] = ()
    # Numeric columns summarised in stats.json.
    score_columns: ClassVar[tuple[str, ...]] = ()
    # True: decisions come from plan()/apply_plan() after every partition was scored.
    global_plan: ClassVar[bool] = False
    # True: the stage reads the run's input manifest (the first stage of the flow).
    reads_manifest: ClassVar[bool] = False
    # Reasons given by the stage's decision step (scores + decision keys, no model): the rejections
    # re-judged when decision keys change.  Others (a file that would not open) are scoring outcomes.
    decision_reasons: ClassVar[tuple[str, ...]] = ()
    # True: one input row may become several rows (a video into its clips); see the module doc.
    splits_rows: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config
        # Set by the executor before the stage is shipped to workers: a directory this stage may
        # keep state in across runs (caches), the partitions it reads (a stage may read a whole
        # column of them in setup()), the run directory, and every stage's provenance.
        self.work_dir: Path | None = None
        self.inputs: list[Path] = []
        self.run_root: Path | None = None
        self.run_provenance: dict[str, Any] = {}

    @property
    def reads_whole_input(self) -> bool:
        """True if setup() reads every input partition, so they must all be finished first."""
        return False

    @property
    def resources(self) -> Resources:
        return Resources()

    def preflight(self) -> list[str]:
        """What setup() would lack here (models, weights, packages), each naming its config key:
        checked in the driver before any work, in seconds, without loading anything."""
        return []

    def setup(self) -> None:
        """Load models; called once per worker before the first batch."""

    def teardown(self) -> None:
        """Release what setup() acquired."""

    def provenance(self) -> dict[str, Any]:
        """Models, files and versions this stage's decisions depend on (for run.json)."""
        return {}

    def __call__(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def redecide(self, table: pa.Table) -> pa.Table:
        """The decision step again, from the rows' stored score columns and the config alone (no
        model): rows rejected with one of `decision_reasons`, and kept rows, are judged anew; other
        rejections stand.  global_plan stages decide through plan()/apply_plan() instead."""
        return table

    def plan(self, scored: list[Path]) -> dict:
        """global_plan stages: the decision plan, from the scored partitions of the whole run."""
        raise NotImplementedError

    def static_plan(self) -> dict | None:
        """global_plan stages: a plan that needs no scores (decisions from the config alone), so
        each partition is decided as soon as it is scored, with no barrier; None: it needs them."""
        return None

    def apply_plan(self, table: pa.Table, plan: dict) -> pa.Table:
        """global_plan stages: decide a scored partition; rows dropped while scoring stay dropped."""
        raise NotImplementedError

    def summary(self) -> dict:
        """Stage-specific facts for stats.json (e.g. whether its model weights are random)."""
        return {}

    def write_partition(self, kept: pa.Table, part: str) -> dict | None:
        """On the worker, once partition `part` is decided: write what the stage emits beyond its
        rows (tars); the JSON-able answer is stored with the partition and given to finalize()."""
        return None

    def finalize(self, outputs: list[dict]) -> dict:
        """In the driver, once every partition is done: merge what write_partition() returned
        (in partition order); the answer goes into stats.json."""
        return {}


def with_decisions(table: pa.Table, reasons: list[str | None], details: list[str | None]) -> pa.Table:
    """Set drop_reason/drop_detail on a table, replacing any previous stage's values."""
    for col in (DROP_REASON, DROP_DETAIL):
        if col in table.column_names:
            table = table.drop_columns([col])
    table = table.append_column(DROP_REASON, pa.array(reasons, pa.string()))
    return table.append_column(DROP_DETAIL, pa.array(details, pa.string()))


def keep_earlier_drops(table: pa.Table, reasons: list[str | None], details: list[str | None]) -> pa.Table:
    """with_decisions for apply_plan: a row already dropped while scoring keeps its reason."""
    old_r = table.column(DROP_REASON).to_pylist()
    old_d = table.column(DROP_DETAIL).to_pylist()
    merged = [(r0, d0) if r0 else (r, d) for r0, d0, r, d in zip(old_r, old_d, reasons, details)]
    return with_decisions(table, [m[0] for m in merged], [m[1] for m in merged])


def top_fraction_cutoff(scores: list[float], fraction: float) -> float:
    """The lowest score kept when keeping the best `fraction` of `scores` (at least one)."""
    ranked = sorted(scores, reverse=True)
    k = max(1, math.ceil(round(fraction * len(ranked), 9)))  # 0.07 * 100 is 7.000000000000001
    return ranked[k - 1]


# the columns prefer_key reads
PREFER_COLUMNS = ("clip_id", "clip_score", "span_start", "span_end", "width", "height")


def prefer_key(prefer: list[str], cols: dict[str, list], i: int) -> tuple:
    """Sort key of row `i` of `cols` (PREFER_COLUMNS as lists) when one clip of a duplicate group is
    kept: the smallest is kept, best by `prefer` (clip_score, span duration, resolution), then clip id."""
    out = []
    for what in prefer:
        if what == "clip_score":
            out.append(-(cols["clip_score"][i] if cols["clip_score"][i] is not None else -2.0))
        elif what == "duration":
            out.append(-((cols["span_end"][i] or 0.0) - (cols["span_start"][i] or 0.0)))
        else:
            out.append(-((cols["width"][i] or 0) * (cols["height"][i] or 0)))
    return (*out, cols["clip_id"][i])


def reopen(table: pa.Table, reasons: tuple[str, ...]) -> pa.Table:
    """The rows as scored: decisions for `reasons` cleared, other rejections kept."""
    old_r = table.column(DROP_REASON).to_pylist()
    old_d = table.column(DROP_DETAIL).to_pylist()
    cleared = [(None, None) if r in reasons else (r, d) for r, d in zip(old_r, old_d)]
    return with_decisions(table, [c[0] for c in cleared], [c[1] for c in cleared])


def column(table: pa.Table, name: str) -> list:
    """A column as a list; nulls when an earlier stage that adds it (e.g. langid's `lang`) did not run."""
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


def set_column(table: pa.Table, name: str, values: Any, type_: pa.DataType | None = None) -> pa.Table:
    """Add or replace a column."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type_)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)
