"""`vtcurate run` end to end: curate (the executor), then train on the shards if the config's
stages end with `train`, then write the report.  The executor knows nothing of either: training
starts after the runner has shut down, so an embedded Ray cluster's CPUs are free for it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from vtcurate.config import TRAIN, PipelineConfig
from vtcurate.errors import UserError
from vtcurate.pipeline.executor import run_pipeline
from vtcurate.pipeline.rundir import RunDir
from vtcurate.storage import write_json

log = logging.getLogger(__name__)

SHARD = "shard"  # the stage whose shards training reads


def run(config: PipelineConfig, manifest: str, run_dir: str | Path, **options) -> list[dict]:
    """Curate (`options` as for run_pipeline), train (if selected) and report; return the
    curation stages' stats."""
    rd = RunDir(Path(run_dir).resolve())
    selected = options.get("stages") or config.stages
    shards_made = SHARD in selected or ((rd.shards / "index.json").exists() and not options.get("fresh"))
    if TRAIN in selected and TRAIN in config.stages and not shards_made:  # before any work
        raise UserError(f"stage {TRAIN} needs the shards of the {SHARD} stage, not found in {rd.root}: "
                        f"select {SHARD} too")  # fmt: skip
    stats = run_pipeline(config, manifest, run_dir, **options)
    if TRAIN in selected:
        from vtcurate.train.loop import train as train_model

        if not (rd.shards / "index.json").exists():
            raise UserError(f"stage {TRAIN} needs the shards of the shard stage, not found in {rd.root}")
        trained = train_model(config.train, rd.shards, rd.root / TRAIN)
        info = json.loads(rd.run_json.read_text("utf-8"))
        info["train"] = trained
        info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(info, rd.run_json)
    if config.report.enabled:
        write_report(rd)
    return stats


def write_report(rd: RunDir) -> None:
    from vtcurate.report.render import write_report as render

    try:
        log.info("report: %s", render(rd.root))
    except Exception:  # the curated data is complete; a report bug must not fail the run
        log.exception("report: failed to render; rerun with `vtcurate report %s`", rd.root)
