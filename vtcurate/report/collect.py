"""Collect what an auditor needs from a run directory into one JSON-able dict (report.json).

Everything is read from the run's own files: stats.json for counts (so the report cannot disagree
with `vtcurate stats`), parquet for examples and distributions, run.json for provenance.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vtcurate.config import FLOW
from vtcurate.encoding import data_uri
from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.stats import load_stats
from vtcurate.report.answer_key import answer_key_path, evaluate_answer_key
from vtcurate.report.filter_quality import filter_quality
from vtcurate.stages.base import DROP_DETAIL, DROP_REASON
from vtcurate.storage import attach_frames, read_columns, read_rows

SCHEMA_VERSION = 1
TIMING_KEYS = (
    "stage", "rows_in", "rows_processed", "seconds", "rows_per_s", "partitions", "resumed_partitions",
    "workers", "worker_cpu_s", "worker_peak_rss_mb", "driver_cpu_s", "driver_peak_rss_mb", "runner",
)  # fmt: skip
FUNNEL_KEYS = ("stage", "rows_in", "kept", "rejected", "rejected_by_reason", "by_language",
               "videos_in", "videos_split", "videos_rejected", "clips_out")  # fmt: skip
THUMB_SIDE = 96
# columns shown with an example, where the stage wrote them
EXAMPLE_SCORES = (
    "duration", "width", "height", "codec", "lang", "lang_score", "lang_rule",
    "lang_fasttext", "han_ratio", "caption_length", "keyframe_backend",
    "motion_score", "frozen_fraction", "blank_fraction", "text_area", "text_frames", "ocr_text",
    "semantic_similarity",
)  # fmt: skip
BOXED_SIDE = 192  # a thumbnail with its text boxes drawn: twice the others, so the boxes show


def _thumb_image(img) -> str:
    """An RGB image as a small JPEG data URI."""
    from vtcurate.video.frames import encode_jpeg, resize_short_side

    small = encode_jpeg(resize_short_side(img, THUMB_SIDE), 80)
    return data_uri(small, "image/jpeg")


def _thumb(jpeg: bytes) -> str:
    from vtcurate.video.frames import decode_jpeg

    return _thumb_image(decode_jpeg(jpeg))


def _thumb_from_video(row: dict) -> str | None:
    """One middle frame for rows rejected before key-frames existed (videos that did open)."""
    if row.get("duration") is None:
        return None
    from vtcurate.video.frames import read_keyframes

    try:
        frames = read_keyframes(row["video"], row.get("span_start") or 0.0,
                                row.get("span_end") or row["duration"], 1)  # fmt: skip
    except Exception:  # noqa: BLE001 - a missing thumbnail is not an error of the report
        return None
    return _thumb_image(frames.images[0])


def _boxed_thumb(row: dict) -> str | None:
    """The key-frame with the most text boxes (`text_boxes`, text_overlay), its boxes drawn in red."""
    import cv2
    import numpy as np

    from vtcurate.video.frames import encode_jpeg, resize_short_side

    boxes, frames = row.get("text_boxes") or [], row.get("frames") or []
    if not boxes or not frames:
        return None
    counts = defaultdict(int)
    for box in boxes:
        counts[box["frame"]] += 1
    index = max(counts, key=lambda i: (counts[i], -i))
    img = cv2.imdecode(np.frombuffer(frames[index], np.uint8), cv2.IMREAD_COLOR)
    img = np.ascontiguousarray(resize_short_side(img, BOXED_SIDE))
    h, w = img.shape[:2]
    for box in boxes:
        if box["frame"] == index:
            quad = np.round(np.asarray(box["quad"]).reshape(-1, 2) * (w, h)).astype(np.int32)
            cv2.polylines(img, [quad], True, (0, 0, 255), 2)
    return data_uri(encode_jpeg(img[:, :, ::-1], 85), "image/jpeg")


def _example(row: dict) -> dict:
    frames = row.get("frames") or []
    boxed = _boxed_thumb(row)
    if boxed:
        thumbs = [boxed]
    elif frames:
        thumbs = [_thumb(frames[len(frames) // 2])]
    else:
        thumb = _thumb_from_video(row)
        thumbs = [thumb] if thumb else []
    return {
        "clip_id": row["clip_id"],
        "video": row.get("video"),
        "caption": row.get("caption_raw") if row.get("caption_raw") is not None else row.get("caption"),
        "caption_normalised": row.get("caption") if row.get("caption_raw") is not None else None,
        "reason": row.get(DROP_REASON),
        "detail": row.get(DROP_DETAIL),
        "scores": {k: row[k] for k in EXAMPLE_SCORES if row.get(k) is not None},
        "thumbnails": thumbs,
        "thumb_width": BOXED_SIDE if boxed else THUMB_SIDE,
    }


def _examples(paths: list[Path], reasons: set[str], per_reason: int, frames: Path) -> dict[str, list[dict]]:
    """Up to per_reason example rows per reason.  Reads only the reason column of each partition
    until every reason has its examples, then just the chosen rows (their frames from `frames`)."""
    picked: dict[str, list[dict]] = defaultdict(list)
    for path in paths:
        need = {r: per_reason - len(picked[r]) for r in reasons if len(picked[r]) < per_reason}
        if not need:
            break
        idx = []
        for i, reason in enumerate(
            pq.read_table(path, columns=[DROP_REASON]).column(DROP_REASON).to_pylist()
        ):
            if need.get(reason, 0) > 0:
                idx.append(i)
                need[reason] -= 1
        if idx:
            for row in attach_frames(pq.read_table(path).take(idx), frames / path.name).to_pylist():
                picked[row[DROP_REASON]].append(_example(row))
    return picked


def _rejections(rd: RunDir, stats: list[dict], per_reason: int) -> dict:
    out = {}
    for s in stats:
        reasons = s["rejected_by_reason"]
        examples = _examples(rd.stage(s["stage"]).rejected_parts(), set(reasons), per_reason, rd.frame_store)
        out[s["stage"]] = [
            {"reason": reason, "count": count, "examples": examples.get(reason, [])}
            for reason, count in reasons.items()
        ]
    return out


def _values(rd: RunDir, stage: str, columns: list[str]) -> dict[str, dict[str, list]]:
    """{'kept'|'rejected': {column: values}} of one stage."""
    sdir = rd.stage(stage)
    return {
        "kept": read_columns(sdir.kept_parts(), columns),
        "rejected": read_columns(sdir.rejected_parts(), columns),
    }


def _hist(values: list, edges: list[float]) -> dict:
    import numpy as np

    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    counts, _ = np.histogram(np.clip(arr, edges[0], edges[-1]), bins=edges)
    return {"n": int(arr.size), "counts": counts.tolist()}


def _edges(values: list, bins: int = 24) -> list[float]:
    finite = [float(v) for v in values if v is not None]
    hi = max(finite, default=1.0)
    return [hi * i / bins for i in range(bins + 1)] if hi > 0 else [0.0, 1.0]


def _distributions(rd: RunDir, config: dict, finished: set[str]) -> dict:
    """Histograms (edges + counts, not raw values, so the report stays small at any scale)."""
    dists: dict[str, Any] = {}
    if "ingest" in finished:
        v = _values(rd, "ingest", ["duration"])
        edges = _edges(v["kept"]["duration"] + v["rejected"]["duration"])
        dists["duration"] = {
            "title": "Clip duration (ingest)", "unit": "seconds", "edges": edges,
            "series": {side: _hist(v[side]["duration"], edges) for side in v},
            "thresholds": {"min_duration": config["ingest"]["min_duration"],
                           "max_duration": config["ingest"]["max_duration"]},
        }  # fmt: skip
    if "langid" in finished:
        from vtcurate.text.script import caption_length

        v = _values(rd, "langid", ["lang", "lang_score", "caption_length", "caption_raw"])
        languages = config["langid"]["languages"]
        edges = [i / 20 for i in range(21)]
        series = {}
        for lang in languages:
            for side in v:
                scores = [s for s, lg in zip(v[side]["lang_score"], v[side]["lang"]) if lg == lang]
                series[f"{lang} {side}"] = _hist(scores, edges)
        other = [
            s for side in v for s, lg in zip(v[side]["lang_score"], v[side]["lang"]) if lg not in languages
        ]
        series["other languages"] = _hist(other, edges)
        dists["lang_score"] = {
            "title": "Language-ID confidence (langid)", "unit": "lang_score", "edges": edges,
            "series": series, "thresholds": config["langid"]["min_confidence"],
        }  # fmt: skip
        kept = v["kept"]
        for lang in languages:
            norm = [n for n, lg in zip(kept["caption_length"], kept["lang"]) if lg == lang]
            raw = [
                caption_length(raw or "", lang)
                for raw, lg in zip(kept["caption_raw"], kept["lang"])
                if lg == lang
            ]
            edges_len = _edges(norm + raw)
            dists[f"caption_length_{lang}"] = {
                "title": f"Caption length, {lang}: raw vs normalised (kept rows)",
                "unit": "characters" if lang == "zh" else "words", "edges": edges_len,
                "series": {"raw": _hist(raw, edges_len), "normalised": _hist(norm, edges_len)},
                "thresholds": {"min_length": config["langid"]["min_length"][lang],
                               "max_length": config["langid"]["max_length"][lang]},
            }  # fmt: skip
    if "clip_filter" in finished:
        v = _values(rd, "clip_filter", ["lang", "clip_score"])
        every = [x for side in v for x in v[side]["clip_score"] if x is not None]
        lo, hi = min(every, default=0.0), max(every, default=1.0)
        edges = [lo + (hi - lo) * i / 24 for i in range(25)] if hi > lo else [lo, lo + 1.0]
        langs = sorted({lg for side in v for lg in v[side]["lang"] if lg})
        plan_path = rd.stage("clip_filter").plan
        plan = json.loads(plan_path.read_text("utf-8")) if plan_path.exists() else {}
        cutoffs = {lang: t["cutoff"] for lang, t in plan.get("thresholds", {}).items() if t}
        enforced = plan.get("decisions_enforced", True)
        dists["clip_score"] = {
            "title": "CLIP frame-caption similarity (clip_filter)"
            + ("" if enforced else ": random weights, thresholds not enforced"),
            "unit": "cosine", "edges": edges,
            "series": {
                f"{lang} {side}": _hist(
                    [x for x, lg in zip(v[side]["clip_score"], v[side]["lang"]) if lg == lang], edges
                )
                for lang in langs for side in v
            },
            "thresholds": cutoffs,
        }  # fmt: skip
    if "semantic_dedup" in finished:
        dists["semantic_similarity"] = _semantic_similarity(rd, config)
    return dists


def _semantic_similarity(rd: RunDir, config: dict) -> dict:
    """Each clip's best match in its cluster, per language, with the duplicate threshold."""
    v = _values(rd, "semantic_dedup", ["lang", "semantic_similarity"])
    every = [x for side in v for x in v[side]["semantic_similarity"] if x is not None]
    lo = min(min(every, default=0.0), config["semantic_dedup"]["threshold"])
    edges = [lo + (1.0 - lo) * i / 24 for i in range(25)] if lo < 1.0 else [lo - 1.0, 1.0]
    plan_path = rd.stage("semantic_dedup").plan
    plan = json.loads(plan_path.read_text("utf-8")) if plan_path.exists() else {}
    langs = sorted({lg for side in v for lg in v[side]["lang"] if lg})
    by_lang = {(lang, side): [x for x, lg in zip(v[side]["semantic_similarity"], v[side]["lang"])
                              if lg == lang] for lang in langs for side in v}  # fmt: skip
    return {
        "title": "Best match in its cluster: mean-frame CLIP cosine (semantic_dedup)"
        + ("" if plan.get("decisions_enforced", True)
           else f": random weights, not enforced ({plan.get('would_reject', 0)} would be dropped)"),
        "unit": "cosine", "edges": edges,
        "series": {f"{lang} {side}": _hist(values, edges) for (lang, side), values in by_lang.items()},
        "thresholds": {"threshold": config["semantic_dedup"]["threshold"]},
    }  # fmt: skip


def _plan_cutoff(rd: RunDir, stage: str) -> float | None:
    path = rd.stage(stage).plan
    return json.loads(path.read_text("utf-8")).get("cutoff") if path.exists() else None


def _clip_quality(rd: RunDir, config: dict, finished: set[str]) -> dict:
    """Histograms of motion's and text_overlay's scores, with their decision thresholds."""
    dists: dict[str, Any] = {}
    if "motion" in finished:
        v = _values(rd, "motion", ["motion_score", "blank_fraction"])
        edges = _edges(v["kept"]["motion_score"] + v["rejected"]["motion_score"])
        dists["motion_score"] = {
            "title": "Motion: share of moving pixels, median of the frame pairs (motion)",
            "unit": "motion_score",
            "edges": edges, "series": {side: _hist(v[side]["motion_score"], edges) for side in v},
            "thresholds": {"min_motion": config["motion"]["min_motion"]},
        }  # fmt: skip
        edges = [i / 8 for i in range(9)]
        dists["blank_fraction"] = {
            "title": "Black or flat key-frames (motion)", "unit": "share of key-frames", "edges": edges,
            "series": {side: _hist(v[side]["blank_fraction"], edges) for side in v},
            "thresholds": {"max_blank_fraction": config["motion"]["max_blank_fraction"]},
        }  # fmt: skip
    if "text_overlay" in finished:
        v = _values(rd, "text_overlay", ["text_area"])
        edges = _edges(v["kept"]["text_area"] + v["rejected"]["text_area"])
        cutoff = _plan_cutoff(rd, "text_overlay")
        dists["text_area"] = {
            "title": "Burned-in text: share of the frame covered (text_overlay)", "unit": "text_area",
            "edges": edges, "series": {side: _hist(v[side]["text_area"], edges) for side in v},
            "thresholds": {} if cutoff is None else {"cut-off": cutoff},
        }  # fmt: skip
    return dists


def _normalisation_samples(rd: RunDir, limit: int) -> list[dict]:
    if not rd.stage("langid").done:
        return []
    changed: list[dict] = []
    for part in rd.stage("langid").kept_parts():  # stop reading once `limit` are found
        rows = read_rows([part], ["clip_id", "lang", "caption_raw", "caption"])
        changed += [r for r in rows if (r["caption_raw"] or "").strip() != r["caption"]]
        if len(changed) >= limit:
            break
    return changed[:limit]


def _samples(rd: RunDir, stats: list[dict], limit: int) -> list[dict]:
    with_frames = [s["stage"] for s in stats if s["stage"] in ("keyframes", "shard")]
    if not with_frames or limit == 0:
        return []
    # the latest: every column, and the frames from the frame store
    rows = read_rows(rd.stage(with_frames[-1]).kept_parts(), limit=limit, frames=rd.frame_store)
    out = []
    for row in rows:
        rewritten = row.get("rewrite_status") == "rewritten"
        aux = row.get("aux_captions") or []
        out.append({
            "clip_id": row["clip_id"],
            "lang": row.get("lang"),
            "caption_raw": row.get("caption_raw"),
            "caption": row.get("caption"),
            "caption_rewritten": row["caption"] if rewritten else None,
            "aux_captions": [f"f{a['frame']} {a['lang']}: {a['text']}" for a in aux],
            "rewrite_status": row.get("rewrite_status"),
            "frame_times": row.get("frame_times"),
            "frames": [_thumb(f) for f in row.get("frames") or []],
        })  # fmt: skip
    return out


def _random_weight_models(provenance: Any, where: str = "") -> list[str]:
    """Paths of provenance entries that declare random weights."""
    found = []
    if isinstance(provenance, dict):
        if provenance.get("random_weights") is True:
            found.append(where or "(run)")
        for key, value in provenance.items():
            found += _random_weight_models(value, f"{where}.{key}" if where else key)
    return found


def _shards(rd: RunDir) -> dict | None:
    index_path = rd.shards / "index.json"
    if not index_path.exists():
        return None
    index = json.loads(index_path.read_text("utf-8"))
    langs: dict[str, int] = defaultdict(int)
    for shard in index["shards"]:
        for lang, n in shard["languages"].items():
            langs[lang] += n
    return {
        "count": len(index["shards"]),
        "samples": index["samples"],
        "bytes": sum(s["bytes"] for s in index["shards"]),
        "splits": index["splits"],
        "languages": dict(sorted(langs.items())),
        "shards": index["shards"],
    }


def _sweep_values(mode: str, value: float) -> list[float]:
    if mode == "top_fraction":
        return sorted({round(v, 3) for v in (value, 0.5, 0.7, 0.8, 0.9, 1.0) if 0 < v <= 1})
    return sorted({round(value * f, 6) for f in (0.5, 0.75, 1.0, 1.25, 1.5)}) if value else [0.0]


def _threshold_keys(config: dict, finished: set[str]) -> list[tuple[str, list[float]]]:
    """Each score threshold of the run's config (dotted key) with the values its what-if table
    tries around the run's own."""
    keys = []
    if "clip_filter" in finished:
        for lang, t in sorted(config["clip_filter"]["thresholds"].items()):
            keys.append((f"clip_filter.thresholds.{lang}.value", _sweep_values(t["mode"], t["value"])))
    if "text_overlay" in finished:
        t = config["text_overlay"]["threshold"]
        keys.append(("text_overlay.threshold.value", _sweep_values(t["mode"], t["value"])))
    if "motion" in finished:
        keys.append(("motion.min_motion", _sweep_values("absolute", config["motion"]["min_motion"])))
    if "semantic_dedup" in finished:  # a cosine near 1: values a little around it, not shares of it
        t = config["semantic_dedup"]["threshold"]
        values = sorted({round(min(1.0, t + d), 3) for d in (-0.1, -0.05, 0.0, 0.02)})
        keys.append(("semantic_dedup.threshold", values))
    return keys


def _whatif_tables(rd: RunDir, config: dict, finished: set[str], answer_key: Path | None) -> list[dict]:
    """For each score threshold, what the run would keep at other values (from the stored scores,
    as `vtcurate whatif --sweep`), and the answer key's planted caught / clean lost."""
    from vtcurate.pipeline.decisions import whatif_run

    out, stored = [], {}  # the stored rows, read once for every table
    for key, values in _threshold_keys(config, finished):
        rows = []
        for value in values:
            funnel, dropped = whatif_run(rd.root, [f"{key}={value}"], stored)
            judged = evaluate_answer_key(rd, answer_key, sorted(finished, key=FLOW.index), dropped)
            rows.append({"value": value, "kept": funnel[-1]["kept"], "unscored": funnel[-1]["unscored"],
                         "planted_caught": judged["summary"].get("caught", 0) if judged else None,
                         "clean_lost": len(judged["clean_wrongly_dropped"]) if judged else None})  # fmt: skip
        out.append({"key": key, "rows": rows})
    return out


def collect(run_dir: str | Path, answer_key: str | Path | None = None) -> dict:
    rd = RunDir(run_dir)
    info = rd.read_run_json() or {}
    config = info.get("config", {})
    report_cfg = config.get("report", {})
    stats = load_stats(rd.root)
    finished = [s["stage"] for s in stats]
    answer_key = Path(answer_key) if answer_key else answer_key_path(info)
    provenance = info.get("stages", {})
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {k: info.get(k) for k in ("name", "created", "finished", "input", "fingerprint", "runner")},
        "funnel": [{k: s.get(k) for k in FUNNEL_KEYS} for s in stats],
        "stages_not_run": [s for s in FLOW if s not in finished],
        "rejections": _rejections(rd, stats, report_cfg.get("examples_per_reason", 3)),
        "distributions": {**_distributions(rd, config, set(finished)),
                          **_clip_quality(rd, config, set(finished))} if config else {},  # fmt: skip
        "normalisation_samples": _normalisation_samples(rd, report_cfg.get("samples", 6)),
        "samples": _samples(rd, stats, report_cfg.get("samples", 6)),
        "shards": _shards(rd),
        "timing": [{k: s.get(k) for k in TIMING_KEYS} for s in stats],  # fmt: skip
        "provenance": {
            "config": config,
            "versions": info.get("versions", {}),
            "models": provenance,
            "random_weights": _random_weight_models(provenance),
        },
        "answer_key": evaluate_answer_key(rd, answer_key, finished),
        "filter_quality": filter_quality(rd.root, answer_key),
        "whatif": _whatif_tables(rd, config, set(finished), answer_key)
        if config and report_cfg.get("whatif", True) else [],
    }
