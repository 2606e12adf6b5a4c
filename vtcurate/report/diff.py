"""Which clips two runs treated differently (`vtcurate diff RUN_A RUN_B`).

A clip's outcome at a stage is `kept`, the reason code it was rejected with, or nothing (it never
reached the stage).  For each clip whose outcomes differ, the diff names the first stage where they
do, with both outcomes: `{stage, clip_id, a, b}`; a clip in one run's input only differs at
`input` (`absent` in the other).  The summary counts the entries per (stage, a, b) and shows a few
examples of each with their captions and the stage's scores in both runs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from vtcurate.config import FLOW
from vtcurate.pipeline.rundir import RunDir
from vtcurate.stages.base import DROP_DETAIL, DROP_REASON
from vtcurate.storage import read_columns

KEPT, ABSENT, INPUT = "kept", "absent", "input"


def outcomes(run_dir: str | Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(the finished stages in flow order, {clip_id: {stage: kept | reason}})."""
    rd = RunDir(run_dir)
    if not rd.run_json.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no run.json)")
    stages = [s for s in FLOW if rd.stage(s).done]
    fate: dict[str, dict[str, str]] = defaultdict(dict)
    for stage in stages:
        sdir = rd.stage(stage)
        for clip in read_columns(sdir.kept_parts(), ["clip_id"])["clip_id"]:
            fate[clip][stage] = KEPT
        rejected = read_columns(sdir.rejected_parts(), ["clip_id", DROP_REASON])
        for clip, reason in zip(rejected["clip_id"], rejected[DROP_REASON]):
            fate[clip][stage] = reason
    return stages, fate


def diff(run_a: str | Path, run_b: str | Path) -> list[dict]:
    """Every clip whose fate differs, at the first stage where it does, in flow order."""
    stages_a, a = outcomes(run_a)
    stages_b, b = outcomes(run_b)
    shared = [s for s in stages_a if s in stages_b]
    entries = []
    for clip in sorted(a.keys() | b.keys()):
        if clip not in a or clip not in b:
            entries.append({"stage": INPUT, "clip_id": clip, "a": KEPT if clip in a else ABSENT,
                            "b": KEPT if clip in b else ABSENT})  # fmt: skip
            continue
        for stage in shared:
            fa, fb = a[clip].get(stage), b[clip].get(stage)
            if fa != fb:
                entries.append({"stage": stage, "clip_id": clip, "a": fa or ABSENT, "b": fb or ABSENT})
                break
    order = {s: i for i, s in enumerate([INPUT, *FLOW])}
    return sorted(entries, key=lambda e: (order[e["stage"]], e["clip_id"]))


def _rows(run_dir: str | Path, stage: str, clips: set[str]) -> dict[str, dict]:
    """The rows of `clips` as `stage` wrote them (kept or rejected), frames left out."""
    sdir = RunDir(run_dir).stage(stage)
    found = {}
    for part in [*sdir.kept_parts(), *sdir.rejected_parts()]:
        names = [n for n in pq.read_schema(part).names if n != "frames"]
        table = pq.read_table(part, columns=names)
        for row in table.to_pylist():
            if row["clip_id"] in clips:
                found[row["clip_id"]] = row
    return found


def examples(run_a: str | Path, run_b: str | Path, entries: list[dict], per_group: int = 3) -> dict:
    """Up to `per_group` examples of each (stage, a, b): caption, detail and scores in each run."""
    from vtcurate.stages import stage_class

    picked: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for e in entries:
        group = (e["stage"], e["a"], e["b"])
        if e["stage"] != INPUT and len(picked[group]) < per_group:
            picked[group].append(e["clip_id"])
    out = {}
    for (stage, fa, fb), clips in picked.items():
        rows_a, rows_b = _rows(run_a, stage, set(clips)), _rows(run_b, stage, set(clips))
        scores = stage_class(stage).score_columns
        out[(stage, fa, fb)] = [
            {"clip_id": c, "caption": (rows_a.get(c) or rows_b.get(c) or {}).get("caption"),
             "a": {k: (rows_a.get(c) or {}).get(k) for k in (*scores, DROP_DETAIL)},
             "b": {k: (rows_b.get(c) or {}).get(k) for k in (*scores, DROP_DETAIL)}}
            for c in clips
        ]  # fmt: skip
    return out


def _thumbnails(run_dir: str | Path, clips: set[str]) -> dict[str, str]:
    """A middle key-frame of each clip that has key-frames in the run, as a data URI."""
    from vtcurate.report.collect import _thumb
    from vtcurate.storage import FRAMES

    store = RunDir(run_dir).frame_store
    found = {}
    for part in sorted(store.glob("part-*.parquet")) if store.is_dir() else []:
        table = pq.read_table(part, columns=["clip_id", FRAMES])
        for clip, frames in zip(table.column("clip_id").to_pylist(), table.column(FRAMES).to_pylist()):
            if clip in clips and frames:
                found[clip] = _thumb(frames[len(frames) // 2])
    return found


def render_html(run_a: str | Path, run_b: str | Path, entries: list[dict]) -> str:
    """The diff as a self-contained HTML page in the report's style."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from vtcurate.report.render import _fmt

    shown = examples(run_a, run_b, entries)
    clips = {ex["clip_id"] for exs in shown.values() for ex in exs}
    thumbs = {**_thumbnails(run_b, clips), **_thumbnails(run_a, clips)}
    groups = []
    for (stage, fa, fb), count in Counter((e["stage"], e["a"], e["b"]) for e in entries).items():
        cards = [{**ex, "thumbnail": thumbs.get(ex["clip_id"])} for ex in shown.get((stage, fa, fb), [])]
        groups.append({"stage": stage, "a": fa, "b": fb, "count": count, "examples": cards})
    env = Environment(loader=PackageLoader("vtcurate.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))  # fmt: skip
    env.filters["fmt"] = _fmt
    runs = {k: {"path": str(p), "name": Path(p).name} for k, p in (("a", run_a), ("b", run_b))}
    return env.get_template("diff.html.j2").render(d={**runs, "total": len(entries), "groups": groups})


def format_diff(run_a: str | Path, run_b: str | Path, entries: list[dict]) -> str:
    if not entries:
        return f"{run_a} and {run_b} kept and rejected the same clips, for the same reasons"
    groups = Counter((e["stage"], e["a"], e["b"]) for e in entries)
    shown = examples(run_a, run_b, entries)
    lines = [f"{len(entries)} clips differ (a = {run_a}, b = {run_b})", ""]
    for (stage, fa, fb), count in groups.items():
        lines.append(f"{stage:12} a: {fa:22} b: {fb:22} {count:6d}")
        for ex in shown.get((stage, fa, fb), []):
            changed = [k for k in ex["a"] if ex["a"].get(k) != ex["b"].get(k)]
            scores = "; ".join(f"{k} {ex['a'].get(k)!r} -> {ex['b'].get(k)!r}" for k in changed)
            lines.append(f"    {ex['clip_id']}: {ex['caption']!r}" + (f"  [{scores}]" if scores else ""))
    return "\n".join(lines)
