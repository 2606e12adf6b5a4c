"""A changed decision key re-applied from stored scores, against a fresh run with that key: the
demo corpus through the demo config's whole flow (local runner, clip_filter decisions enforced),
then the clip_filter threshold changed on the same run directory."""

from __future__ import annotations

import shutil
import time

from bench.common import OUT, Row, ratio_row

CONFIGS = OUT.parent.parent / "configs"


def _config(fraction: float):
    from vtcurate.config import load_config

    return load_config(CONFIGS / "demo.yaml", [
        "report.enabled=false", "clip_filter.enforce_with_random_weights=true",
        f"clip_filter.thresholds={{'*': {{mode: top_fraction, value: {fraction}}}}}",
    ])  # fmt: skip


def run(reps: int) -> list[Row]:
    from vtcurate.demo.corpus import generate
    from vtcurate.pipeline.executor import run_pipeline

    corpus = OUT / "demo-corpus"
    if not (corpus / "manifest.jsonl").exists():
        generate(corpus)
    manifest = str(corpus / "manifest.jsonl")
    changed, fresh = OUT / "decisions-changed", OUT / "decisions-fresh"
    for d in (changed, fresh):
        shutil.rmtree(d, ignore_errors=True)
    run_pipeline(_config(0.9), manifest, changed, runner="local")  # the run an auditor has
    t0 = time.perf_counter()
    stats = run_pipeline(_config(0.6), manifest, changed, runner="local")
    reapplied = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_pipeline(_config(0.6), manifest, fresh, runner="local")
    baseline = time.perf_counter() - t0
    kept = next(s["kept"] for s in stats if s["stage"] == "clip_filter")
    name = "clip_filter threshold changed on the demo run (local runner)"
    note = (f"top 90% -> top 60% of each language ({kept} clips kept); later stages recomputed, rewrites "
            "from the generation cache")
    return [ratio_row("decisions", name, reapplied, "s", "a fresh run with that threshold", baseline,
                      higher_is_better=False, target=10, note=note)]  # fmt: skip
