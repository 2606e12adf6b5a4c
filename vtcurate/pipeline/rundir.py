"""The run directory: where each stage's partitions, stats and completion markers live.

runs/<name>/run.json
runs/<name>/stages/<NN>_<stage>/{kept,rejected}/part-NNNNN.parquet, stats.json, _SUCCESS
    global_plan stages also: scored/part-NNNNN.parquet, plan.json
    stages with per-partition outputs (shard): outputs/part-NNNNN.json
    keyframes' kept partitions are the frame store: no other stage writes the key-frame bytes
runs/<name>/shards/<split>/<split>-<lang>-<partition>-NNNNNN.tar, shards/index.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
    def outputs(self) -> Path:
        """What write_partition() returned per partition (shard: the tars it wrote)."""
        return self.path / "outputs"

    @property
    def plan(self) -> Path:
        return self.path / "plan.json"

    @property
    def stats(self) -> Path:
        return self.path / "stats.json"

    @property
    def done(self) -> bool:
        return (self.path / SUCCESS).exists()

    def part_files(self, part: str) -> tuple[Path, Path]:
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

    @property
    def frame_store(self) -> Path:
        """The one copy of the key-frame bytes (the keyframes stage's kept partitions)."""
        from vtcurate.stages import frames_stage

        return self.stage(frames_stage()).kept

    def ingest_input(self) -> Path:
        """Where the manifest is staged as parquet partitions before ingest runs."""
        return self.stage("ingest").path / "_input"

    def read_run_json(self) -> dict | None:
        return json.loads(self.run_json.read_text("utf-8")) if self.run_json.exists() else None
