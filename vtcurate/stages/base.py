"""The stage contract.

A stage is cheap to construct and picklable; it loads models in `setup()`, once per worker.  Its
`__call__` takes a pyarrow Table and returns every row it was given, with its score columns added
and `drop_reason` / `drop_detail` set on the rows it rejects (null on kept rows).  Scoring and
deciding are separate methods so that a decision can be re-applied from the scores alone.
Stages know nothing of Ray or Beam: runners read `resources` and map stages over partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
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


class Stage:
    name: ClassVar[str]
    # Columns this stage adds to its input (checked against what it writes, by a test).
    output_columns: ClassVar[tuple[str, ...]] = ()
    # Numeric columns summarised in stats.json.
    score_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def resources(self) -> Resources:
        return Resources()

    def setup(self) -> None:
        """Load models; called once per worker before the first batch."""

    def teardown(self) -> None:
        """Release what setup() acquired."""

    def provenance(self) -> dict[str, Any]:
        """Models, files and versions this stage's decisions depend on (for run.json)."""
        return {}

    def __call__(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError


def with_decisions(table: pa.Table, reasons: list[str | None], details: list[str | None]) -> pa.Table:
    """Set drop_reason/drop_detail on a table, replacing any previous stage's values."""
    for col in (DROP_REASON, DROP_DETAIL):
        if col in table.column_names:
            table = table.drop_columns([col])
    table = table.append_column(DROP_REASON, pa.array(reasons, pa.string()))
    return table.append_column(DROP_DETAIL, pa.array(details, pa.string()))


def set_column(table: pa.Table, name: str, values: Any, type_: pa.DataType | None = None) -> pa.Table:
    """Add or replace a column."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type_)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)
