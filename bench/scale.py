"""Scale: 10,000 rows over the real videos (distinct ids) through ingest -> langid -> keyframes ->
clip_filter -> dedup -> shard on Ray, streamed against the same flow with a barrier after every
stage (`ray.materialize_every_stage`), both as drivers joining one Ray cluster that the bench
starts once (separate embedded clusters would each pay Ray's start-up); then `make demo`'s run on
the Ray runner against the local one.  One run each: `reps` is ignored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from itertools import chain, zip_longest
from pathlib import Path

import psutil

from bench.common import OUT, Row, ratio_row
from bench.memory import CONFIGS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VIDEO_DIRS = (DATA / "videos", DATA / "videos_edge")
CAPTIONS = tuple(DATA / "captions" / f for f in ("en_msrvtt_1kA_test_part1.jsonl", "zh_msvd_cn_part1.jsonl"))
STAGES = "stages=[ingest, langid, keyframes, clip_filter, dedup, shard]"
SCRATCH = OUT / "scale"


def build_manifest(out: Path, rows: int) -> Path:
    """`rows` clips cycling over the real videos (absolute paths) and over English and Chinese
    captions taken in turn, each row with its own id."""
    videos = sorted(str(p) for d in VIDEO_DIRS for p in d.iterdir() if p.suffix in (".mp4", ".mkv", ".avi"))
    per_file = [[json.loads(line)["caption"] for line in f.read_text("utf-8").splitlines() if line.strip()]
                for f in CAPTIONS]  # fmt: skip
    captions = [c for c in chain.from_iterable(zip_longest(*per_file)) if c]
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / f"manifest-{rows}.jsonl"
    with manifest.open("w") as fh:
        for n in range(rows):
            row = {"id": f"scale-{n:06d}", "video": videos[n % len(videos)],
                   "caption": captions[n % len(captions)]}  # fmt: skip
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return manifest


def _du(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def measured_run(manifest: Path, name: str, runner: str, *args: str) -> dict:
    """`vtcurate run` as a child process over a fresh run directory: its wall, its own peak RSS and
    CPU (the kernel's, from wait4: no sample can miss the peak), and the machine's CPU busy share
    over the run (iowait counted as idle)."""
    run_dir = SCRATCH / name
    shutil.rmtree(run_dir, ignore_errors=True)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "vtcurate.cli", "run", str(CONFIGS / "demo.yaml"), "--input", str(manifest),
           "--run-dir", str(run_dir), "--runner", runner, "--set", "report.enabled=false", *args]  # fmt: skip
    log = SCRATCH / f"{name}.log"  # beside the run directory, so it is not counted in its bytes
    cpu0, start, t0 = psutil.cpu_times(), time.time(), time.perf_counter()
    with log.open("w") as fh:
        child = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall, cpu1 = time.perf_counter() - t0, psutil.cpu_times()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{' '.join(cmd)} exited {child.returncode}; log {log}:\n{tail}")
    idle = sum(getattr(cpu1, k, 0) - getattr(cpu0, k, 0) for k in ("idle", "iowait"))
    total = sum(cpu1) - sum(cpu0)
    return {"run_dir": run_dir, "wall": wall, "start": start, "busy": 1 - idle / total,
            "driver_cpu": usage.ru_utime + usage.ru_stime,
            "driver_rss_mb": usage.ru_maxrss / 1024}  # fmt: skip


def pipeline_figures(run: dict) -> dict:
    """What the run directory says about the run: stats, segments, shards and bytes."""
    from vtcurate.pipeline.stats import load_stats

    root = run["run_dir"]
    stats = load_stats(root)
    shard = stats[-1]
    assert shard["stage"] == "shard", [s["stage"] for s in stats]
    index = json.loads((root / "shards" / "index.json").read_text())
    tars = list((root / "shards").glob("*/*.tar"))
    first = min(p.stat().st_mtime for p in tars) - run["start"] if tars else None
    segments = json.loads((root / "run.json").read_text())["invocations"][-1]["segments"]
    return {
        **run,
        "kept": shard["kept"],
        "rows": stats[0]["rows_in"],
        "kept_by_stage": {s["stage"]: s["kept"] for s in stats},
        "worker_cpu": sum(s["worker_cpu_s"] for s in stats),
        # per segment: a stage's driver_cpu_s counts each segment it streamed in, shared with the others
        "executor_cpu": sum(seg["driver_cpu_s"] for seg in segments),
        "plan_s": {s["stage"]: round(s["plan_seconds"], 1) for s in stats if s.get("plan_seconds")},
        "segments": len(segments),
        "first_shard": first,
        "written": _du(root),
        "shard_bytes": sum(s["bytes"] for s in index["shards"]),
    }


def _ray_runs(n: int, small: int) -> dict[str, dict]:
    """The streamed and barrier runs at `n` rows and a streamed run at `small`, as drivers of one
    local cluster started here."""
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        common = ("--ray-address", address, "--set", STAGES)
        runs = {}
        # the small run first: it also warms the page cache for the videos
        for key, rows, extra in (("small", small, ()), ("streamed", n, ()),
                                 ("barrier", n, ("--set", "ray.materialize_every_stage=true"))):  # fmt: skip
            manifest = build_manifest(SCRATCH, rows)
            runs[key] = pipeline_figures(measured_run(manifest, f"{key}-{rows}", "ray", *common, *extra))
    finally:
        ray.shutdown()
    return runs


def _demo_walls() -> dict[str, float]:
    """`make demo`'s run (all its stages, rewrite's model load included) on each runner; Ray starts
    its own embedded cluster, as `make demo` does."""
    from vtcurate.demo.corpus import generate

    corpus = SCRATCH / "demo"
    if not (corpus / "manifest.jsonl").exists():
        generate(corpus)
    return {r: measured_run(corpus / "manifest.jsonl", f"demo-{r}", r)["wall"] for r in ("local", "ray")}


def run(reps: int) -> list[Row]:
    n = int(os.environ.get("VTC_BENCH_SCALE_ROWS", 10_000))
    small = int(os.environ.get("VTC_BENCH_SCALE_SMALL", 1_000))
    group = f"scale ({n:,} real clips, Ray)"
    if not all(d.is_dir() for d in VIDEO_DIRS):
        return [Row(group, "skipped", 0.0, "", note=f"no real videos in {' or '.join(map(str, VIDEO_DIRS))}")]
    cpus = os.cpu_count() or 1
    runs = _ray_runs(n, small)
    s, b, m = runs["streamed"], runs["barrier"], runs["small"]
    demo = _demo_walls()

    def where(r: dict) -> str:
        return (f"{r['segments']} segments, {r['wall']:.0f} s, kept {r['kept_by_stage']}, "
                f"plans {r['plan_s']} s")  # fmt: skip

    once = "one run each (reps ignored)"
    framed = s["kept_by_stage"]["keyframes"]
    return [
        ratio_row(group, f"{n:,} rows streamed: wall", s["wall"], "s", "barrier after every stage", b["wall"],
                  higher_is_better=False, target=1.25,
                  note=f"target ≤ 0.8× the baseline; streamed: {where(s)}; baseline: {where(b)}; {once}"),
        ratio_row(group, "clips/s per CPU", s["rows"] / s["wall"] / cpus, "clips/s/CPU",
                  "barrier after every stage", b["rows"] / b["wall"] / cpus,
                  note=f"{s['rows']:,} manifest rows, {cpus} CPUs"),
        ratio_row(group, "machine CPU busy fraction", s["busy"], "", "all CPUs busy", 1.0, target=0.8,
                  note=f"1 − idle/total over the run, iowait idle; baseline run {b['busy']:.2f}"),
        ratio_row(group, "time to the first finished shard", s["first_shard"], "s", "wall", s["wall"],
                  higher_is_better=False, target=round(1 / 0.6, 3),
                  note=f"{s['first_shard'] / s['wall']:.2f} of the wall (target ≤ 0.6); "
                       f"baseline {b['first_shard'] / b['wall']:.2f}"),
        ratio_row(group, "bytes written per kept clip", s["written"] / s["kept"] / 1e3, "kB",
                  "shard bytes per kept clip", s["shard_bytes"] / s["kept"] / 1e3, higher_is_better=False,
                  target=round(1 / 1.3, 3),
                  note=f"target ≤ 1.3× the shard bytes; run dir {s['written'] / 1e6:.1f} MB, "
                       f"shards {s['shard_bytes'] / 1e6:.1f} MB, {s['kept']} kept of {s['rows']:,}"),
        # dedup keeps ~one clip per real video whatever the rows: per clip that got key-frames is
        # what the frame store costs against a sample in the tars
        ratio_row(group, "bytes written per clip with key-frames", s["written"] / framed / 1e3, "kB",
                  "shard bytes per kept clip", s["shard_bytes"] / s["kept"] / 1e3, higher_is_better=False,
                  target=round(1 / 1.3, 3),
                  note=f"{framed:,} clips with key-frames; the frame store and the tars each hold "
                       "every frame once"),
        ratio_row(group, "driver CPU", s["driver_cpu"], "CPU s", "worker CPU", s["worker_cpu"],
                  higher_is_better=False, target=20,
                  note=f"target ≤ 5% of the workers'; whole driver process (imports, connecting), "
                       f"of it {s['executor_cpu']:.1f} s streaming segments"),
        Row(group, f"{small:,} rows streamed: driver peak RSS", m["driver_rss_mb"], "MB",
            note=f"{m['wall']:.0f} s, {m['kept']} kept"),
        ratio_row(group, f"{n:,} rows streamed: driver peak RSS", s["driver_rss_mb"], "MB", f"{small:,} rows",
                  m["driver_rss_mb"], higher_is_better=False, target=round(1 / 1.1, 3),
                  note=f"target within 10% of {small:,} rows; baseline run {b['driver_rss_mb']:.0f} MB"),
        ratio_row(group, "make demo: Ray runner wall", demo["ray"], "s", "local runner", demo["local"],
                  higher_is_better=False, target=0.8,
                  note="target ≤ 1.25× local; every demo stage incl. the LLM load, embedded Ray cluster"),
    ]  # fmt: skip
