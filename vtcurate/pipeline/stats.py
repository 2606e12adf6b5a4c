"""Per-stage statistics, computed from the stage's own parquet outputs (the single source of truth)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from vtcurate.config import FLOW
from vtcurate.pipeline.rundir import RunDir, StageDir
from vtcurate.stages.base import DROP_REASON
from vtcurate.storage import read_columns


def _summary(values: list) -> dict | None:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return None
    p5, p50, p95 = np.percentile(arr, [5, 50, 95])
    return {
        "count": int(arr.size),
        "min": float(arr.min()),
        "p5": float(p5),
        "median": float(p50),
        "mean": float(arr.mean()),
        "p95": float(p95),
        "max": float(arr.max()),
    }


def _videos(kept: dict, rejected: dict, rows_in: int) -> dict:
    """A splits_rows stage: videos in, split into clips or rejected whole, and clips out."""
    whole = sum(p is None for p in rejected["parent_id"])
    split = len({p for p in kept["parent_id"] + rejected["parent_id"] if p is not None})
    return {"videos_in": rows_in, "videos_split": split, "videos_rejected": whole,
            "clips_out": len(kept["parent_id"]) + len(rejected["parent_id"]) - whole}  # fmt: skip


def stage_stats(
    name: str, sdir: StageDir, rows_in: int, score_columns: tuple[str, ...], splits: bool = False
) -> dict:
    """Counts from the stage's files.  `splits` (a stage turning videos into clips): rows_in counts
    videos and kept counts clips, and the video fields say what became of each video."""
    wanted = ["lang", DROP_REASON, *score_columns, *(["parent_id"] if splits else [])]
    kept = read_columns(sdir.kept_parts(), wanted)
    rejected = read_columns(sdir.rejected_parts(), wanted)
    n_kept, n_rej = len(kept[DROP_REASON]), len(rejected[DROP_REASON])
    by_lang: dict[str, dict[str, int]] = defaultdict(lambda: {"kept": 0, "rejected": 0})
    for lang in kept["lang"]:
        by_lang[lang or "und"]["kept"] += 1
    for lang in rejected["lang"]:
        by_lang[lang or "und"]["rejected"] += 1
    by_reason = Counter(rejected[DROP_REASON])
    return {
        "stage": name,
        "rows_in": rows_in,
        "kept": n_kept,
        "rejected": n_rej,
        "rejected_by_reason": dict(by_reason.most_common()),
        "by_language": dict(sorted(by_lang.items())),
        "scores": {
            col: {
                "kept": _summary(kept[col]),
                "rejected": _summary(rejected[col]),
            }
            for col in score_columns
        },
        **(_videos(kept, rejected, rows_in) if splits else {}),
    }


def accounted(stats: dict) -> int:
    """Input rows the stage's outputs account for: kept + rejected, or, for a stage that splits
    videos into clips, the videos split plus the videos rejected whole."""
    if "videos_in" in stats:
        return stats["videos_split"] + stats["videos_rejected"]
    return stats["kept"] + stats["rejected"]


def load_stats(run_dir: str | Path) -> list[dict]:
    """stats.json of every finished stage, in flow order."""
    rd = RunDir(run_dir)
    out = []
    for name in FLOW:
        sdir = rd.stage(name)
        if sdir.stats.exists():
            out.append(json.loads(sdir.stats.read_text("utf-8")))
    return out


def funnel_json(stats: list[dict]) -> list[dict]:
    keys = ("stage", "rows_in", "kept", "rejected", "rejected_by_reason", "videos_in")
    return [{k: s[k] for k in keys if k in s} for s in stats]


def format_funnel(stats: list[dict]) -> str:
    """The funnel as a terminal table: one line per stage, then its reasons and languages."""
    lines = [f"{'stage':<12} {'rows_in':>8} {'kept':>8} {'rejected':>9}  {'time':>7}"]
    lines.append("-" * len(lines[0]))
    for s in stats:
        secs = s.get("seconds")
        lines.append(
            f"{s['stage']:<12} {s['rows_in']:>8} {s['kept']:>8} {s['rejected']:>9}  "
            + (f"{secs:>6.1f}s" if secs is not None else "")
        )
        if "videos_in" in s:
            lines.append(f"{'':<14}{s['videos_in']} videos -> {s['clips_out']} clips, {s['kept']} kept "
                         f"({s['videos_rejected']} videos rejected whole)")  # fmt: skip
        for reason, count in s["rejected_by_reason"].items():
            lines.append(f"{'':<14}- {reason}: {count}")
        langs = ", ".join(
            f"{lang} {v['kept']}/{v['kept'] + v['rejected']}" for lang, v in s["by_language"].items()
        )
        if langs and set(s["by_language"]) != {"und"}:
            lines.append(f"{'':<14}kept/in by language: {langs}")
    return "\n".join(lines)
