"""The quality filters' cost per clip, for README.md: one line (bench/costs.md) written from the rows
of the `filters` and `semantic_dedup` groups in bench/results.json, by every bench run that writes
results and by `python -m bench.costs` (from the stored rows, nothing measured)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import README, RESULTS_JSON

COSTS_MD = Path(__file__).resolve().parent / "costs.md"  # README.md carries it between markers
DEFAULT = {"motion": "4 pairs (default)", "text_overlay": "ocr_short_side 360 (default), 4 frames"}
SEMANTIC = ("semantic_dedup (synthetic embeddings)", "100,000 clips, 512-d: plan per clip")


def _time(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1000:.2g} ms"


def summary(payload: dict) -> str:
    """The README's line: each filter's cost per clip at its default settings, where measured."""
    rows = {(r["group"], r["name"]): r for r in payload["rows"]}
    m = payload["machine"]

    def cost(stage: str, clip: str) -> str:
        row = rows.get((f"{stage} {clip}", DEFAULT[stage]))
        return _time(row["value"]) if row else "not measured"

    keyframes = rows.get(("motion 720p text", DEFAULT["motion"]))
    semantic = rows.get(SEMANTIC)
    return (
        f"Cost per clip at the default settings on this machine ({m['cpus']} CPUs, {m['processor']}), "
        "from `python -m bench --only filters semantic_dedup` (rows of "
        "[docs/benchmarks.md](docs/benchmarks.md)): on one core, `motion` "
        f"{cost('motion', '720p text')} on a 720p clip ({cost('motion', 'demo 128 px')} on a demo clip) "
        f"and `text_overlay` {cost('text_overlay', '720p text')} on a 720p clip with text, "
        f"{cost('text_overlay', '720p no text')} without ({cost('text_overlay', 'demo 128 px')} on a demo "
        "clip), against "
        + (_time(keyframes["baseline_value"]) if keyframes else "(not measured)")
        + " for the `keyframes` stage on that 720p clip; `semantic_dedup`'s run-wide plan "
        + (f"{semantic['value']:.0f} µs a clip at 100,000 clips" if semantic else "not measured")
        + ".\n"
    )


def write(payload: dict) -> None:
    """bench/costs.md, and README.md's copy of it."""
    from vtcurate.config_doc import include

    text = summary(payload)
    COSTS_MD.write_text(text, "utf-8")
    README.write_text(include(README.read_text("utf-8"), "bench/costs.md", text), "utf-8")


if __name__ == "__main__":
    write(json.loads(RESULTS_JSON.read_text()))
