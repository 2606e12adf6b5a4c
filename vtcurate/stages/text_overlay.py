"""text_overlay: find burned-in text (subtitles, watermarks, captions) on the key-frames with PP-OCRv4.

Score, on `ocr_frames` key-frames spread over the clip, at the resolution `ocr_short_side` (or the
video's own, if smaller): `text_area`, the mean share of the frame covered by recognised text (the
union of its boxes); `text_frames`, how many of those frames hold text; `ocr_text`, the distinct
lines read, in order (burned-in subtitles are useful text: they travel in the shard's .json);
`text_boxes`, every box (key-frame index, corners as shares of width and height, text, confidence);
`ocr_side`, the short side OCR saw.  Key-frames are stored small (128 px in the demo, where a
subtitle line is a few pixels high and PP-OCRv4 finds nothing), so when the stored JPEGs are smaller
than that resolution the frames are decoded again from the video at their `frame_times`; otherwise
the stored JPEGs are read.

Decision: `text_overlay` when `text_area` exceeds the threshold (an absolute share of the frame, or
the cut-off that keeps the `value` share of the run with the least text: a run-wide plan, as for
clip_filter) and text was found on at least `min_text_frames` of the frames read.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from vtcurate.config import TextOverlayConfig
from vtcurate.stages.base import (
    DROP_DETAIL,
    DROP_REASON,
    Resources,
    Stage,
    column,
    keep_earlier_drops,
    set_column,
    top_fraction_cutoff,
    with_decisions,
)
from vtcurate.storage import read_columns

log = logging.getLogger(__name__)

BOX_TYPE = pa.struct(
    [("frame", pa.int32()), ("quad", pa.list_(pa.float32())), ("text", pa.string()), ("score", pa.float32())]
)
TEXT_TYPES = {
    "text_area": pa.float64(),
    "text_frames": pa.int32(),
    "ocr_text": pa.string(),
    "text_boxes": pa.list_(BOX_TYPE),
    "ocr_side": pa.int32(),
}


def spread(n: int, k: int) -> list[int]:
    """k indices of n spread evenly, first and last included (k = 0 or k >= n: all of them)."""
    if k <= 0 or k >= n:
        return list(range(n))
    if k == 1:
        return [n // 2]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def text_cover(quads: list[list[tuple[float, float]]], height: int, width: int) -> float:
    """Share of an image of this size covered by the union of the quadrilaterals (pixels)."""
    import cv2

    if not quads:
        return 0.0
    mask = np.zeros((height, width), np.uint8)
    for q in quads:  # one at a time: fillPoly given several polygons leaves where they overlap empty
        cv2.fillPoly(mask, [np.round(np.asarray(q)).astype(np.int32)], 1)
    return float(mask.mean())


class TextOverlayStage(Stage):
    name = "text_overlay"
    output_columns = tuple(TEXT_TYPES)
    score_columns = ("text_area", "text_frames")
    global_plan = True
    decision_reasons = ("text_overlay",)  # decided by the plan; missing_frames is not

    config: TextOverlayConfig

    @property
    def resources(self) -> Resources:
        from vtcurate.models.ocr import wants_gpu

        return Resources(num_cpus=self.config.threads, num_gpus=1.0 if wants_gpu(self.config.device) else 0.0,
                         batch_size=8)  # fmt: skip

    def _ocr(self):
        from vtcurate.models.ocr import load_ocr

        cfg = self.config
        # onnxruntime's threads: the CPUs the stage declares (Op.threads does the same for torch)
        return load_ocr(max(1, math.ceil(self.resources.num_cpus)), cfg.device, cfg.min_text_score)

    def preflight(self) -> list[str]:
        from vtcurate.models.ocr import ocr_problem

        problem = ocr_problem(self.config.device)
        return [f"text_overlay.device: {problem}"] if problem else []

    def setup(self) -> None:
        self._ocr()

    def provenance(self) -> dict:
        from vtcurate.models.ocr import OCR

        cfg = self.config
        return {"ocr": OCR(cfg.threads, cfg.device, cfg.min_text_score).provenance(),
                "ocr_short_side": cfg.ocr_short_side, "ocr_frames": cfg.ocr_frames}  # fmt: skip

    def _images(self, row: dict, picked: list[int]) -> tuple[list[np.ndarray], int]:
        """The picked key-frames as RGB images at the resolution OCR reads, and its short side."""
        import cv2

        from vtcurate.video.frames import resize_short_side

        stored = [cv2.imdecode(np.frombuffer(row["frames"][i], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
                  for i in picked]  # fmt: skip
        stored_side = min(stored[0].shape[:2])
        native = min(row.get("width") or 0, row.get("height") or 0) or self.config.ocr_short_side
        side = min(self.config.ocr_short_side, native)
        if stored_side < side and row.get("frame_times"):
            from vtcurate.video.timed import read_frames_at

            within = None
            if self.config.seek == "intra":  # each key-frame's own segment of the span
                start, n = row["span_start"], len(row["frames"])
                step = (row["span_end"] - start) / n
                within = [(start + i * step, start + (i + 1) * step) for i in picked]
            times = [row["frame_times"][i] for i in picked]
            try:
                decoded, _ = read_frames_at(row["video"], times, within=within)
                return [resize_short_side(img, side) for img in decoded], side
            except Exception as err:  # noqa: BLE001 - any decoder error: read the stored key-frames
                log.warning("%s: key-frames not decoded again (%s); OCR reads them at %d px",
                            row["clip_id"], err, stored_side)  # fmt: skip
        if stored_side > side:
            return [resize_short_side(img, side) for img in stored], side
        return stored, stored_side

    def _score(self, row: dict) -> dict:
        ocr = self._ocr()
        picked = spread(len(row["frames"]), self.config.ocr_frames)
        images, side = self._images(row, picked)
        areas, lines, boxes = [], [], []
        for index, image in zip(picked, images):
            h, w = image.shape[:2]
            found = ocr.read(image)
            areas.append(text_cover([b.quad for b in found], h, w))
            for b in found:
                quad = [v for x, y in b.quad for v in (x / w, y / h)]
                boxes.append({"frame": index, "quad": quad, "text": b.text, "score": b.score})
                lines.append(b.text)
        return {
            "text_area": float(np.mean(areas)),
            "text_frames": sum(a > 0 for a in areas),
            "ocr_text": "\n".join(dict.fromkeys(lines)),
            "text_boxes": boxes,
            "ocr_side": side,
        }

    def __call__(self, batch: pa.Table) -> pa.Table:
        scores, reasons, details = [], [], []
        for row in batch.to_pylist():
            if not row.get("frames"):
                scores.append(dict.fromkeys(TEXT_TYPES))
                reasons.append("missing_frames")
                details.append("no key-frames to read")
                continue
            scores.append(self._score(row))
            reasons.append(None)
            details.append(None)
        for col, type_ in TEXT_TYPES.items():
            batch = set_column(batch, col, [s[col] for s in scores], type_)
        return with_decisions(batch, reasons, details)

    def static_plan(self) -> dict | None:
        """An absolute threshold needs no other partition's scores: decided as each one is scored."""
        t = self.config.threshold
        return None if t.mode == "top_fraction" else {"mode": t.mode, "value": t.value, "cutoff": t.value}

    def plan(self, scored: list[Path]) -> dict:
        t = self.config.threshold
        if t.mode == "absolute":
            return self.static_plan()
        cols = read_columns(scored, ["text_area", DROP_REASON])
        areas = [a for a, r in zip(cols["text_area"], cols[DROP_REASON]) if r is None and a is not None]
        # the least text is best: the cut-off keeping the `value` share with the smallest areas
        cutoff = -top_fraction_cutoff([-a for a in areas], t.value) if areas else 0.0
        return {"mode": t.mode, "value": t.value, "cutoff": cutoff, "n": len(areas)}

    def apply_plan(self, table: pa.Table, plan: dict) -> pa.Table:
        cutoff, min_frames = plan["cutoff"], self.config.min_text_frames
        what = "absolute" if plan["mode"] == "absolute" else f"least-text {plan['value']:.0%} of {plan['n']}"
        reasons, details = [], []
        for area, frames, text in zip(column(table, "text_area"), column(table, "text_frames"),
                                      column(table, "ocr_text")):  # fmt: skip
            if area is not None and area > cutoff and frames >= min_frames:
                reasons.append("text_overlay")
                details.append(f"text covers {area:.1%} of the frame > {cutoff:.1%} ({what}) on {frames} "
                               f"frames: {' / '.join((text or '').splitlines())[:80]}")  # fmt: skip
            else:
                reasons.append(None)
                details.append(None)
        # a row this plan's reason dropped before is judged anew (the plan re-applied); others stand
        earlier = [None if r in self.decision_reasons else r for r in column(table, DROP_REASON)]
        kept_details = [d if r else None for r, d in zip(earlier, column(table, DROP_DETAIL))]
        table = with_decisions(table, earlier, kept_details)
        return keep_earlier_drops(table, reasons, details)
