"""motion: reject static, frozen and mostly blank clips, with their motion scores kept.

Scores, on grey frames at `short_side` px:
- `blank_fraction`: the share of the stored key-frames that are black (nearly every pixel dark) or
  flat (one colour): free, no decoding;
- `motion_scores`: per frame pair, the share of pixels that moved between two frames `pair_gap_s`
  apart, `pairs` pairs at the middles of equal segments of the clip, decoded again from the video
  at low cost (one seek plan for all of them, as for the key-frames);  `motion_score` is their
  median, so a slideshow (still pictures, a cut now and then) scores about 0 like a still clip, and
  a cut inside one pair does not lift a static clip;
- `frozen_fraction`: the share of pairs whose frames are the same picture (repeated frames).
With `pairs: 0`, or where the video cannot be decoded again, consecutive key-frames are compared
instead (`motion_source` says which): no decoding, but the gap is then the key-frames' spacing (an
eighth of the clip), so the score depends on the clip's length, and the JPEGs add their noise.

Decision, from the scores alone: `blank` when at least `max_blank_fraction` of the key-frames are
black or flat; else `static` when `motion_score < min_motion` or at least `max_frozen_fraction` of
the pairs are frozen.
"""

from __future__ import annotations

import logging
import statistics

import pyarrow as pa

from vtcurate.config import MotionConfig
from vtcurate.stages.base import (
    DROP_DETAIL,
    DROP_REASON,
    Resources,
    Stage,
    column,
    set_column,
    with_decisions,
)
from vtcurate.video import motion as mv

log = logging.getLogger(__name__)

MOTION_TYPES = {
    "motion_score": pa.float64(),
    "motion_scores": pa.list_(pa.float32()),
    "frozen_fraction": pa.float64(),
    "blank_fraction": pa.float64(),
    "motion_source": pa.string(),
}


class MotionStage(Stage):
    name = "motion"
    output_columns = tuple(MOTION_TYPES)
    score_columns = ("motion_score", "frozen_fraction", "blank_fraction")
    decision_reasons = ("blank", "static")  # decided from the scores; missing_frames is not

    config: MotionConfig

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=1, batch_size=16)

    def _pairs(self, row: dict, keyframes: list) -> tuple[list[tuple], str]:
        """Grey frame pairs: decoded from the video, or consecutive key-frames (and why)."""
        cfg = self.config
        if cfg.pairs:
            from vtcurate.video.timed import read_frames_at

            times = mv.pair_times(row["span_start"], row["span_end"], cfg.pairs, cfg.pair_gap_s)
            try:
                images, _ = read_frames_at(row["video"], [t for pair in times for t in pair], cfg.threads)
            except Exception as err:  # noqa: BLE001 - any decoder error: fall back to the key-frames
                log.warning("%s: motion pairs not decoded (%s); comparing key-frames", row["clip_id"], err)
                source = "keyframes:decode_failed"
            else:
                greys = [mv.grey(img, cfg.short_side) for img in images]
                return list(zip(greys[::2], greys[1::2])), "pairs"
        else:
            source = "keyframes"
        return list(zip(keyframes, keyframes[1:])), source

    def _score(self, row: dict) -> dict:
        cfg = self.config
        keyframes = [mv.decode_grey(jpg, cfg.short_side) for jpg in row["frames"]]
        blank = [mv.is_black(g, cfg.black_luma, cfg.black_pixels) or mv.is_flat(g, cfg.flat_std)
                 for g in keyframes]  # fmt: skip
        pairs, source = self._pairs(row, keyframes)
        moving = [mv.moving_share(a, b, cfg.pixel_delta) for a, b in pairs]
        frozen = [mv.mean_abs_diff(a, b) <= cfg.frozen_mad for a, b in pairs]
        return {
            "motion_score": statistics.median(moving) if moving else None,
            "motion_scores": moving,
            "frozen_fraction": sum(frozen) / len(frozen) if frozen else None,
            "blank_fraction": sum(blank) / len(blank),
            "motion_source": source,
        }

    def decide(
        self, motion: float | None, frozen: float | None, blank: float | None
    ) -> tuple[str | None, str | None]:
        """(reason, detail) from a clip's scores and the config's decision keys; (None, None): kept."""
        cfg = self.config
        if blank is not None and blank >= cfg.max_blank_fraction:
            return "blank", f"{blank:.0%} of key-frames black or flat >= {cfg.max_blank_fraction:.0%}"
        if motion is not None and motion < cfg.min_motion:
            return "static", f"motion {motion:.4f} < {cfg.min_motion:g} (share of moving pixels)"
        if frozen is not None and frozen >= cfg.max_frozen_fraction:
            return "static", f"frozen: {frozen:.0%} of frame pairs repeat >= {cfg.max_frozen_fraction:.0%}"
        return None, None

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        scores: list[dict] = []
        reasons: list[str | None] = []
        details: list[str | None] = []
        for row in rows:
            if not row.get("frames"):
                scores.append(dict.fromkeys(MOTION_TYPES))
                reasons.append("missing_frames")
                details.append("no key-frames to compare")
                continue
            s = self._score(row)
            scores.append(s)
            reason, detail = self.decide(s["motion_score"], s["frozen_fraction"], s["blank_fraction"])
            reasons.append(reason)
            details.append(detail)
        for col, type_ in MOTION_TYPES.items():
            batch = set_column(batch, col, [s[col] for s in scores], type_)
        return with_decisions(batch, reasons, details)

    def redecide(self, table: pa.Table) -> pa.Table:
        """The decision again from the stored scores and the config (no decoding): kept rows and rows
        rejected `blank` or `static` are judged anew; other rejections stand."""
        reasons, details = column(table, DROP_REASON), column(table, DROP_DETAIL)
        scores = zip(*(column(table, c) for c in ("motion_score", "frozen_fraction", "blank_fraction")))
        for i, (motion, frozen, blank) in enumerate(scores):
            if reasons[i] is None or reasons[i] in self.decision_reasons:
                reasons[i], details[i] = self.decide(motion, frozen, blank)
        return with_decisions(table, reasons, details)
