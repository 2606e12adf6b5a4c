"""Driver memory on a large manifest: 20,000 tiny clips (a few 1 s demo videos, each referenced by
many rows with its own id) through ingest, langid, keyframes and shard on Ray, in a fresh process
per run.  The driver streams partitions (manifest in, tars out), so its peak RSS must not grow with
the rows: the baseline is the same run over a tenth of them."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from itertools import product
from pathlib import Path

from bench.common import OUT, Row, ratio_row

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STAGES = "stages=[ingest, langid, keyframes, shard]"


def build_manifest(out: Path, rows: int, videos: int = 8) -> Path:
    """A manifest of `rows` clips over `videos` distinct 1 s videos (128 px, 12 frames)."""
    from vtcurate.demo.corpus import COLOURS, MOTIONS, SHAPES, ClipSpec, render, write_h264

    out.mkdir(parents=True, exist_ok=True)
    specs = [ClipSpec(*combo) for combo in product(COLOURS, SHAPES, MOTIONS)][:videos]
    for i, spec in enumerate(specs):
        if not (out / f"v{i}.mp4").exists():
            write_h264(out / f"v{i}.mp4", render(spec, random.Random(i), seconds=1.0))
    manifest = out / f"manifest-{rows}.jsonl"
    with manifest.open("w") as fh:
        for n in range(rows):
            spec = specs[n % len(specs)]
            fh.write(json.dumps({"id": f"clip-{n:06d}", "video": f"v{n % len(specs)}.mp4",
                                 "caption": spec.caption("en")}) + "\n")  # fmt: skip
    return manifest


def run_driver(manifest: Path, run_dir: Path, runner: str, *overrides: str) -> list[dict]:
    """`vtcurate run` in a fresh process (so its peak RSS is this run's); the stages' stats."""
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "vtcurate.cli", "run", str(CONFIGS / "demo.yaml"), "--input", str(manifest),
           "--run-dir", str(run_dir), "--runner", runner]  # fmt: skip
    for override in ("report.enabled=false", *overrides):
        cmd += ["--set", override]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from vtcurate.pipeline.stats import load_stats

    return load_stats(run_dir)


def driver_memory(reps: int) -> list[Row]:
    rows = []
    peak = {}
    for n in (2_000, 20_000):
        manifest = build_manifest(OUT / "tiny-clips", n)
        stats = run_driver(manifest, OUT / f"memory-{n}", "ray", STAGES, "partition_rows=200")
        assert stats[-1]["stage"] == "shard" and stats[-1]["kept"] == n, stats[-1]
        peak[n] = max(s["driver_peak_rss_mb"] for s in stats)
        # the stages stream together: the run's wall is its segments', not the sum of the stages'
        segments = json.loads((OUT / f"memory-{n}" / "run.json").read_text())["invocations"][-1]["segments"]
        seconds = sum(seg["seconds"] for seg in segments)
        rows.append(Row("memory (20k tiny clips, Ray)", f"{n:,} rows: driver peak RSS", peak[n], "MB",
                        note=f"{seconds:.0f} s, worker peak RSS "
                             f"{max(s['worker_peak_rss_mb'] or 0 for s in stats):.0f} MB"))  # fmt: skip
    # ratio = RSS at 2,000 rows / RSS at 20,000 rows: 1.0 when the driver does not grow with the rows
    rows.append(ratio_row("memory (20k tiny clips, Ray)", "20,000 rows: driver peak RSS", peak[20_000], "MB",
                          "2,000 rows", peak[2_000], higher_is_better=False))  # fmt: skip
    return rows
