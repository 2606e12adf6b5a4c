"""The run directory: where each stage's partitions, stats and completion markers live.

runs/<name>/run.json
runs/<name>/stages/<NN>_<stage>/{kept,rejected}/part-NNNNN.parquet, stats.json, _SUCCESS
runs/<name>/shards/<split>/<split>-<lang>-NNNNNN.tar, shards/index.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from vtcurate.config import FLOW

SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class StageDir:
    path: Path

    @property
    def kept(self) -> Path:
        return self.path / "kept"

    @property
    def rejected(self) -> Path:
        return self.path / "rejected"

    @property
    def scored(self) -> Path:
        """global_plan stages: every row, scored, before the run-wide plan decides them."""
        return self.path / "scored"

    @property
    def plan(self) -> Path:
        return self.path / "plan.json"

    @property
    def stats(self) -> Path:
        return self.path / "stats.json"

    @property
    def done(self) -> bool:
        return (self.path / SUCCESS).exists()

    def outputs(self, part: str) -> tuple[Path, Path]:
        return self.kept / f"{part}.parquet", self.rejected / f"{part}.parquet"

    def kept_parts(self) -> list[Path]:
        return sorted(self.kept.glob("part-*.parquet"))

    def rejected_parts(self) -> list[Path]:
        return sorted(self.rejected.glob("part-*.parquet"))


class RunDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    def stage(self, name: str) -> StageDir:
        return StageDir(self.root / "stages" / f"{FLOW.index(name):02d}_{name}")

    def ingest_input(self) -> Path:
        """Where the manifest is staged as parquet partitions before ingest runs."""
        return self.stage("ingest").path / "_input"

    def read_run_json(self) -> dict | None:
        return json.loads(self.run_json.read_text("utf-8")) if self.run_json.exists() else None


def row_count(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def read_columns(paths: list[Path], columns: list[str]) -> dict[str, list]:
    """Columns of stage outputs as lists; a column a partition lacks reads as nulls."""
    out: dict[str, list] = {c: [] for c in columns}
    for path in paths:
        names = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in columns if c in names])
        for c in columns:
            out[c].extend(table.column(c).to_pylist() if c in names else [None] * table.num_rows)
    return out


def read_rows(paths: list[Path], columns: list[str] | None = None, limit: int | None = None) -> list[dict]:
    """Rows of stage outputs as dicts (all columns by default), stopping after `limit` rows."""
    out: list[dict] = []
    for path in paths:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in columns if c in names] if columns else None)
        out.extend(table.to_pylist())
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out
