"""Training on CPU (`make train-demo`'s settings): steady-state samples/s and step time against the
settings before the training step was profiled, in the same run, and the held-out evaluation.

The data is the training demo corpus curated by configs/train-demo.yaml without its train stage
(local runner).  "Before" is the same code with the old settings: torch's default threads (all
CPUs) beside one loader worker, no frame cache, 8 frames a clip; the fused AdamW and the text tower
cut at the last end token, which came with the same change, are in both.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

from bench.common import OUT, Row, ratio_row

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train-demo.yaml"
STEPS, WINDOW = 40, 10  # samples/s from metrics.jsonl windows of WINDOW steps, the first one left out
ABLATION_MODELS = 20  # the curation ablation: 4 curations x 3 seeds, plus model variants


def _before(cpus: int) -> list[str]:
    return [
        f"train.threads={cpus}",
        "train.num_workers=1",
        "train.cache_frames=false",
        "train.model.num_frames=8",
    ]


def build_shards() -> Path:
    from vtcurate.config import load_config
    from vtcurate.demo.train_corpus import generate_training_corpus
    from vtcurate.pipeline.executor import run_pipeline

    root = OUT / "train-corpus"
    shutil.rmtree(root, ignore_errors=True)
    generate_training_corpus(root / "data")
    flow = "stages=[ingest,langid,keyframes,clip_filter,dedup,aux_caption,shard]"
    config = load_config(CONFIG, [flow, "report.enabled=false"])
    run_pipeline(config, str(root / "data" / "corpus" / "manifest.jsonl"), root / "run", runner="local")
    return root


def _steady_rate(shards: Path, out: Path, overrides: list[str]) -> float:
    """Samples/s over steps WINDOW..STEPS of a fresh training (loader start-up and the frame cache's
    first fills left out)."""
    from vtcurate.config import load_config
    from vtcurate.train.loop import train

    sets = [
        f"train.steps={STEPS}",
        f"train.log_every={WINDOW}",
        f"train.checkpoint_every={STEPS}",
        "train.eval_split=''",
        *overrides,
    ]
    shutil.rmtree(out, ignore_errors=True)
    train(load_config(CONFIG, sets).train, shards, out)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(x["samples_per_s"] for x in lines[1:])


def run(reps: int) -> list[Row]:
    import os

    from vtcurate.config import load_config
    from vtcurate.train.evaluate import evaluate_folder
    from vtcurate.train.loop import load_trained, training_threads

    root = build_shards()
    shards, cpus = root / "run" / "shards", len(os.sched_getaffinity(0))
    cfg = load_config(CONFIG, []).train
    now, before = [], []
    for _ in range(reps):  # alternated, so a change in the machine's load falls on both
        before.append(_steady_rate(shards, OUT / "train-before", _before(cpus)))
        now.append(_steady_rate(shards, OUT / "train-now", []))
    rate, base = statistics.median(now), statistics.median(before)
    batch, steps = cfg.batch_size, cfg.steps
    cache = "on" if cfg.cache_frames else "off"
    settings = (
        f"batch {batch}, {cfg.model.num_frames} frames, {training_threads(cfg, 1)} thread(s), "
        f"{cfg.num_workers} loader worker(s), frame cache {cache}"
    )
    old = f"{cpus} threads + 1 loader worker, no cache, 8 frames"
    heldout = root / "data" / "heldout"
    model = load_trained(OUT / "train-now" / "model.pt")
    t0 = time.perf_counter()
    report = evaluate_folder(model, heldout / "annotations.jsonl", heldout / "videos", OUT / "train-eval")
    eval_s = time.perf_counter() - t0
    demo_s = steps * batch / rate
    projected = "from the step time"
    return [
        ratio_row("train", f"train-demo training ({settings})", rate, "samples/s", old, base),
        ratio_row(
            "train", "train-demo step time", batch / rate, "s", old, batch / base, higher_is_better=False
        ),
        ratio_row(
            "train",
            f"train-demo training, {steps} steps ({projected})",
            demo_s,
            "s",
            old,
            steps * batch / base,
            higher_is_better=False,
        ),
        Row(
            "train",
            f"ablation: {ABLATION_MODELS} models x {steps} steps, training only ({projected})",
            ABLATION_MODELS * demo_s / 60,
            "min",
        ),
        Row(
            "train",
            f"held-out evaluation, {report['clips']} clips (8 frames decoded per video + embed)",
            eval_s,
            "s",
        ),
    ]
