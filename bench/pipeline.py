"""End to end: the demo pipeline's clips/s and peak memory per stage (Ray runner, as `make demo`
runs it but with an actor pool per stage, `ray.fuse_stages=false`, so each peak RSS is one
stage's), and the keyframes stage scaling from 1 to 2 Ray workers on the real videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.common import OUT, Row, ratio_row

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def demo(reps: int) -> list[Row]:
    from vtcurate.config import load_config
    from vtcurate.demo.corpus import generate
    from vtcurate.pipeline.executor import run_pipeline

    corpus = OUT / "demo-corpus"
    if not (corpus / "manifest.jsonl").exists():
        generate(corpus)
    run_dir = OUT / "demo-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = load_config(CONFIGS / "demo.yaml", ["report.enabled=false", "ray.fuse_stages=false"])
    stats = run_pipeline(config, str(corpus / "manifest.jsonl"), run_dir, runner="ray")
    rows = []
    for s in stats:
        rate = s["rows_processed"] / s["seconds"] if s["seconds"] else 0.0
        note = "wall of the segments it streamed in, incl. actor start-up" + (
            " and model load" if s["stage"] in MODEL_STAGES else "")  # fmt: skip
        rows.append(Row("end to end (demo, Ray)", s["stage"], rate, "clips/s", note=note))
        rss = s["worker_peak_rss_mb"] or 0.0
        rows.append(Row("memory (demo, Ray)", f"{s['stage']}: worker peak RSS", rss, "MB"))
    segments = json.loads((run_dir / "run.json").read_text())["invocations"][-1]["segments"]
    total = sum(seg["seconds"] for seg in segments)
    rows.append(Row("end to end (demo, Ray)", "all stages", stats[0]["rows_in"] / total, "clips/s",
                    note=f"{stats[0]['rows_in']} manifest rows in {total:.0f} s"))  # fmt: skip
    return rows


MODEL_STAGES = ("clip_filter", "rewrite", "aux_caption")


def ray_scaling(reps: int) -> list[Row]:
    """The keyframes stage alone (a barrier after every stage) on ~40 real clips with 1 and 2 Ray
    actors on 2 CPUs."""
    from bench.shards import build_corpus
    from vtcurate.config import load_config
    from vtcurate.pipeline.executor import run_pipeline

    manifest, _ = build_corpus()
    seconds = {}
    for workers in (1, 2):
        run_dir = OUT / f"ray-{workers}"
        shutil.rmtree(run_dir, ignore_errors=True)
        config = load_config(
            CONFIGS / "default.yaml",
            ["stages=[ingest, keyframes]", "report.enabled=false", "ray.num_cpus=2", "partition_rows=4",
             "ray.materialize_every_stage=true",
             f"ray.stage_resources={{keyframes: {{max_workers: {workers}}}}}"],
        )  # fmt: skip
        stats = run_pipeline(config, str(manifest), run_dir, runner="ray")
        key = next(s for s in stats if s["stage"] == "keyframes")
        assert key["workers"]["workers"] == workers, key["workers"]
        seconds[workers] = key["seconds"]
        rows_in = key["rows_in"]
    return [
        ratio_row("ray scaling", f"keyframes stage, {w} actor(s), {rows_in} real clips", rows_in / seconds[w],
                  "clips/s", "1 actor", rows_in / seconds[1])
        for w in (1, 2)
    ]  # fmt: skip
