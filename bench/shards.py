"""Shards: write and read throughput, and the training loader from shards against a loader that
decodes the raw videos and samples 8 frames per clip (the M2-RAAP key-frame claim)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bench.common import OUT, Row, median_time, ratio_row

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
COPIES = 4  # each real video appears this many times (distinct ids), for a corpus of ~40 clips
BATCH, WORKERS = 8, 2


def build_corpus() -> tuple[Path, Path]:
    """The real videos through ingest -> langid -> keyframes -> shard (local runner, 224 px)."""
    from vtcurate.config import load_config
    from vtcurate.pipeline.executor import run_pipeline

    root = OUT / "shards-corpus"
    manifest = root / "manifest.jsonl"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    videos = sorted(p for p in VIDEOS.iterdir() if p.suffix in (".mp4", ".mkv", ".avi"))
    with manifest.open("w") as fh:
        for copy in range(COPIES):
            for p in videos:
                row = {
                    "id": f"{p.stem}-{copy}",
                    "video": str(p),
                    "caption": f"a short video clip number {copy}",
                }
                fh.write(json.dumps(row) + "\n")
    config = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "default.yaml",
        ["stages=[ingest, langid, keyframes, shard]", "report.enabled=false", "shard.val_fraction=0",
         "shard.max_samples=16"],
    )  # fmt: skip
    run_pipeline(config, str(manifest), root / "run", runner="local")
    return manifest, root / "run"


def _drain(loader) -> int:
    n = 0
    for frames, _captions, _metas in loader:
        n += frames.shape[0]
    return n


class RawVideoClips:
    """Baseline dataset: decode each clip's 8 frames from the video itself, then the same resize and
    centre crop as the shard loader."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        import numpy as np
        import torch

        from vtcurate.video.frames import read_keyframes, resize_short_side

        row = self.rows[i]
        frames = read_keyframes(row["video"], row["span_start"], row["span_end"], 8)
        out = []
        for img in frames.images:
            img = resize_short_side(img, 224)
            h, w = img.shape[:2]
            y, x = (h - 224) // 2, (w - 224) // 2
            out.append(np.ascontiguousarray(img[y : y + 224, x : x + 224]))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2), row["caption"], {}


def _raw_loader(rows: list[dict]):
    import torch

    def collate(items):
        return torch.stack([i[0] for i in items]), [i[1] for i in items], [i[2] for i in items]

    return torch.utils.data.DataLoader(
        RawVideoClips(rows), batch_size=BATCH, num_workers=WORKERS, collate_fn=collate
    )


def run(reps: int) -> list[Row]:
    import pyarrow.parquet as pq

    from vtcurate.config import ShardConfig
    from vtcurate.pipeline.rundir import RunDir
    from vtcurate.pipeline.shards import make_loader
    from vtcurate.stages.shard import ShardStage
    from vtcurate.storage import attach_frames

    if not VIDEOS.is_dir():
        return [Row("shards", "skipped: ../shared/data/videos not found", 0, "")]
    _, run_dir = build_corpus()
    rd = RunDir(run_dir)
    parts = rd.stage("shard").kept_parts()
    tables = [attach_frames(pq.read_table(p), rd.frame_store / p.name) for p in parts]
    n = sum(t.num_rows for t in tables)
    stage = ShardStage(ShardConfig(max_samples=16, val_fraction=0.0))
    out = OUT / "shards-write"
    stage.run_root = out

    def write() -> None:  # as the workers do: each partition's tars
        shutil.rmtree(out, ignore_errors=True)
        for path, table in zip(parts, tables):
            stage.write_partition(table, path.stem)

    t_write = median_time(write, reps)
    size = sum(p.stat().st_size for p in out.rglob("*.tar"))
    t_read = median_time(lambda: [p.read_bytes() for p in sorted(out.rglob("*.tar"))], reps)
    rows = [
        Row("shards", f"write {n} samples (8 JPEGs at 224 px each)", n / t_write, "samples/s",
            extra={"MB_per_s": size / t_write / 1e6}),
        Row("shards", "write", size / t_write / 1e6, "MB/s"),
        Row("shards", "read tars (bytes)", size / t_read / 1e6, "MB/s"),
    ]  # fmt: skip
    kept = [r for t in tables for r in t.select(["video", "span_start", "span_end", "caption"]).to_pylist()]
    t_shards = median_time(lambda: _drain(make_loader(str(rd.shards), split="train", batch_size=BATCH,
                                                      num_workers=WORKERS)), reps)  # fmt: skip
    t0 = time.perf_counter()
    raw_n = _drain(_raw_loader(kept))  # one pass: decoding the raw videos is the slow side
    t_raw = time.perf_counter() - t0
    rows.append(
        ratio_row("loader", f"training loader from shards, batch {BATCH}, {WORKERS} workers", n / t_shards,
                  "clips/s", "decode raw videos, 8 frames", raw_n / t_raw, target=10)
    )  # fmt: skip
    return rows
