"""semantic_dedup's run-wide plan on synthetic clip embeddings (unit vectors, a tenth of them planted
near-copies of another clip, en and zh), written as scored partitions of 5,000 rows.  Each plan runs
in a fresh process, so its peak RSS is the plan's:
- cost per clip at 100,000 512-d embeddings (ViT-B-32's width), against every clip of a language
  compared with every other (`clusters: 1`, exact), with the planted copies each one finds;
- the driver's peak RSS at 500,000 clips against 50,000 (128-d, k-means sample 20,000, spill files of
  8 MB instead of 256 MB so that the larger run spills to many): about 1.0 when the plan's memory
  does not grow with the embeddings.  One run each: `reps` is ignored."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import OUT, Row, ratio_row

PART_ROWS = 5_000
GROUP = "semantic_dedup (synthetic embeddings)"
_PLAN = """
import json, sys, time
from pathlib import Path
import vtcurate.stages.semantic_dedup as sd
from vtcurate.config import SemanticDedupConfig
args = json.loads(sys.argv[1])
sd.BUCKET_BYTES = args.pop("bucket_bytes", sd.BUCKET_BYTES)
stage = sd.SemanticDedupStage(SemanticDedupConfig(**args.pop("config")))
stage.run_provenance = {"clip_filter": {"models": {"*": {"random_weights": False}}}}
t0 = time.perf_counter()
plan = stage.plan(sorted(Path(args["dir"]).glob("part-*.parquet")))
seconds = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, from the bench that wrote the embeddings
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "rss_mb": int(hwm.split()[1]) / 1024,
                  "rejected": plan["rejected"], "models": plan["models"],
                  "plan_bytes": len(json.dumps(plan))}))
"""


def build(out: Path, rows: int, dim: int, seed: int = 0) -> Path:
    """Scored partitions: 90% distinct clips, 10% copies of one of them at cosine 0.96-0.995."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (out / "_done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n_base = rows - rows // 10
    emb = rng.standard_normal((rows, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    langs = np.where(rng.random(rows) < 0.5, "en", "zh")
    of = rng.integers(0, n_base, rows - n_base)
    cos = rng.uniform(0.96, 0.995, rows - n_base)[:, None]
    noise = emb[n_base:] - (emb[n_base:] * emb[of]).sum(1, keepdims=True) * emb[of]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    emb[n_base:] = cos * emb[of] + np.sqrt(1 - cos**2) * noise
    langs[n_base:] = langs[of]
    order = rng.permutation(rows)  # copies spread over the partitions
    for p, start in enumerate(range(0, rows, PART_ROWS)):
        idx = order[start : start + PART_ROWS]
        values = pa.array(emb[idx].astype(np.float16).ravel())
        pq.write_table(pa.table({
            "clip_id": [f"c{i:07d}" for i in idx], "lang": langs[idx].tolist(),
            "clip_model": ["ViT-B-32:bench"] * len(idx), "clip_score": rng.random(len(idx)),
            "clip_embedding": pa.ListArray.from_arrays(pa.array(np.arange(len(idx) + 1) * dim, pa.int32()),
                                                       values),
            "drop_reason": pa.nulls(len(idx), pa.string()), "drop_detail": pa.nulls(len(idx), pa.string()),
        }), out / f"part-{p:05d}.parquet")  # fmt: skip
    (out / "_done").touch()
    return out


def _plan(folder: Path, **args) -> dict:
    out = subprocess.run([sys.executable, "-c", _PLAN, json.dumps({"dir": str(folder), **args})],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(reps: int) -> list[Row]:
    n = 100_000
    folder = build(OUT / f"semantic-{n}", n, 512)
    fast = _plan(folder, config={})
    exact = _plan(folder, config={"clusters": 1})
    planted = n // 10
    clusters = fast["models"]["ViT-B-32:bench"]["clusters"]
    rows = [ratio_row(GROUP, f"{n:,} clips, 512-d: plan per clip", fast["seconds"] / n * 1e6, "µs",
                      "every pair of a language compared (clusters: 1)", exact["seconds"] / n * 1e6,
                      higher_is_better=False,
                      note=f"{clusters} k-means clusters; {fast['rejected']:,} rejected against "
                           f"{exact['rejected']:,} by all pairs ({planted:,} copies planted); "
                           f"peak RSS {fast['rss_mb']:.0f} MB, "
                           f"plan.json {fast['plan_bytes'] / n:.1f} bytes a clip")]  # fmt: skip
    peak = {}
    for m in (50_000, 500_000):
        folder = build(OUT / f"semantic-{m}-128", m, 128)
        peak[m] = _plan(folder, config={"sample_size": 20_000}, bucket_bytes=8 << 20)
    big, small = peak[500_000], peak[50_000]
    rows.append(ratio_row(GROUP, "500,000 clips, 128-d: plan's peak RSS", big["rss_mb"], "MB", "50,000 clips",
                          small["rss_mb"], higher_is_better=False,
                          note=f"embeddings {500_000 * 128 * 2 / 2**20:.0f} MB as float16; "
                               f"{big['seconds']:.0f} s against {small['seconds']:.1f} s"))  # fmt: skip
    return rows
