"""python -m bench [--only GROUP ...] [--reps N]: run the suite, write bench/results.{json,md}."""

from __future__ import annotations

import argparse
import logging
import os
import time

from bench import (
    decisions,
    dedup,
    filters,
    keyframes,
    memory,
    models,
    pipeline,
    scale,
    semantic,
    shards,
    split,
    train,
)
from bench.common import RESULTS_MD, write_results

SUITE = {
    "keyframes": keyframes.run,
    "filters": filters.run,  # motion and text_overlay: cost per clip
    "langid": models.langid,
    "clip": models.clip_scoring,
    "llm": models.llm_rewrite,
    "shards": shards.run,
    "pipeline": pipeline.demo,
    "ray": pipeline.ray_scaling,
    "memory": memory.driver_memory,
    "scale": scale.run,  # one run each: ignores reps
    "split": split.run,  # one run each: ignores reps
    "decisions": decisions.run,  # one run each: ignores reps
    "dedup": dedup.run,  # precision and recall, not times: ignores reps
    "semantic_dedup": semantic.run,  # the run-wide plan on synthetic embeddings; ignores reps
    "train": train.run,  # training steps on CPU, old settings against new
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", nargs="*", choices=sorted(SUITE), help="run these groups only")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per figure (median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows, seconds = [], {}
    suites = [name for name in SUITE if not args.only or name in args.only]
    for name in suites:
        t = time.perf_counter()
        reps = min(args.reps, 2) if name == "llm" else args.reps  # one LLM repetition is ~20 s
        for row in SUITE[name](reps):
            row.suite = name
            rows.append(row)
        seconds[name] = time.perf_counter() - t
        print(f"bench {name}: {seconds[name]:.0f} s", flush=True)
    write_results(rows, seconds)
    print(RESULTS_MD.read_text())


if __name__ == "__main__":
    main()
