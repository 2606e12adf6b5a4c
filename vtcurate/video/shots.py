"""Shots of a video and the clip spans cut from them.

Detection decodes the span once, at the low resolution the detector needs (TransNetV2: 48x27;
PySceneDetect: `detect_width` wide), scaled by the decoder itself.  A shot is a run of decoded
frames, [first, last] inclusive; cut times come from the frames' presentation times, so a clip's
span is frame-accurate on its parent and nothing is re-encoded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vtcurate.video.source import VideoSourceError, open_av_video, open_video

Shot = tuple[int, int]  # first and last frame index, inclusive


@dataclass
class Decoded:
    """What detection saw of a span: per frame its time, mean luma, and (when kept) its pixels."""

    times: list[float] = field(default_factory=list)
    luma: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    fps: float = 0.0

    @property
    def frame_s(self) -> float:
        """One frame's duration: from the stream rate, else from the frame times."""
        if self.fps:
            return 1.0 / self.fps
        return float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.04


def decode_small(
    uri: str,
    start: float,
    end: float,
    width: int,
    height: int | None,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    keep: bool = True,
) -> Decoded:
    """Every frame shown in [start, end), scaled to width x height (height None: keep the aspect).
    `on_frame(index, rgb)` sees each frame as it is decoded; `keep` stores them (TransNetV2 needs
    them all; PySceneDetect detects as they stream past)."""
    out = Decoded()
    try:
        with open_video(uri) as src, open_av_video(src) as (container, stream):
            stream.thread_type = "AUTO"
            out.fps = float(stream.average_rate or 0) or 0.0
            if height is None:
                w, h = stream.codec_context.width or width, stream.codec_context.height or width
                height = max(2, round(width * h / w / 2) * 2)
            tb, t0 = float(stream.time_base), stream.start_time or 0
            if start > 0:
                container.seek(t0 + round(start / tb), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = (frame.pts - t0) * tb if frame.pts is not None else len(out.times) * out.frame_s
                if t < start - 1e-6:
                    continue
                if t >= end - 1e-6:
                    break
                rgb = frame.to_ndarray(width=width, height=height, format="rgb24")
                if on_frame is not None:
                    on_frame(len(out.times), rgb)
                out.times.append(t)
                out.luma.append(float(rgb.mean()))
                if keep:
                    out.frames.append(rgb)
    except VideoSourceError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder error is this video's rejection
        raise VideoSourceError("decode_failed", f"{type(err).__name__}: {err}") from None
    if not out.times:
        raise VideoSourceError("decode_failed", f"no frame decoded in [{start:.3f}, {end:.3f})")
    return out


def shots_from_probabilities(probs: np.ndarray, threshold: float) -> list[Shot]:
    """Runs of frames below the transition threshold: a hard cut splits two frames, a gradual
    transition (dissolve, fade) leaves its frames in no shot."""
    below = probs < threshold
    shots, first = [], None
    for i, ok in enumerate(below):
        if ok and first is None:
            first = i
        elif not ok and first is not None:
            shots.append((first, i - 1))
            first = None
    if first is not None:
        shots.append((first, len(probs) - 1))
    return shots


def shots_from_cuts(cuts: list[int], n_frames: int) -> list[Shot]:
    """Shots between cut frames (each cut is the first frame of a new shot)."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < n_frames), n_frames]
    return [(a, b - 1) for a, b in zip(bounds, bounds[1:])]


class SceneDetectCuts:
    """PySceneDetect's content or adaptive detector, fed frames as they are decoded."""

    def __init__(self, detector: str, threshold: float | None, fps: float, min_frames: int) -> None:
        from scenedetect import AdaptiveDetector, ContentDetector

        if detector == "adaptive":
            kw = {"adaptive_threshold": threshold} if threshold else {}
            self.detector = AdaptiveDetector(min_scene_len=min_frames, **kw)
        else:
            kw = {"threshold": threshold} if threshold else {}
            self.detector = ContentDetector(min_scene_len=min_frames, **kw)
        self.fps = fps or 25.0
        self.cuts: list[int] = []
        self.last = 0

    def __call__(self, index: int, rgb: np.ndarray) -> None:
        from scenedetect.common import FrameTimecode

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # PySceneDetect takes OpenCV's BGR
        self.cuts += [c.frame_num for c in self.detector.process_frame(FrameTimecode(index, self.fps), bgr)]
        self.last = index

    def finish(self) -> list[int]:
        from scenedetect.common import FrameTimecode

        self.cuts += [c.frame_num for c in self.detector.post_process(FrameTimecode(self.last, self.fps))]
        return self.cuts


@dataclass(frozen=True)
class ClipRules:
    min_clip_s: float
    max_clip_s: float
    margin_frames: int
    fade_luma: float


@dataclass
class Spans:
    """Clip spans cut from a video, and what was cut away (for the row's detail)."""

    spans: list[tuple[float, float]]
    shots: int
    too_short: int = 0
    dark: int = 0


def clip_spans(shots: list[Shot], decoded: Decoded, rules: ClipRules) -> Spans:
    """Clip spans from shots: `margin_frames` off each side of every cut, dark frames off a shot's
    ends (fades to black), shots shorter than min_clip_s dropped and longer than max_clip_s cut
    into equal windows of at most max_clip_s."""
    out = Spans([], len(shots))
    times, luma, frame_s = decoded.times, decoded.luma, decoded.frame_s
    for i, (first, last) in enumerate(shots):
        if i > 0:
            first += rules.margin_frames
        if i < len(shots) - 1:
            last -= rules.margin_frames
        while first <= last and luma[first] < rules.fade_luma:
            first += 1
        while last >= first and luma[last] < rules.fade_luma:
            last -= 1
        if first > last:
            out.dark += 1
            continue
        start, end = times[first], times[last] + frame_s
        if end - start < rules.min_clip_s - 1e-6:
            out.too_short += 1
            continue
        pieces = math.ceil((end - start) / rules.max_clip_s - 1e-9)
        edges = np.linspace(first, last + 1, pieces + 1).round().astype(int)
        for a, b in zip(edges, edges[1:]):
            out.spans.append((round(times[a], 6), round(times[b] if b <= last else end, 6)))
    return out


def stride_spans(start: float, end: float, fps: float, stride_s: float, min_clip_s: float) -> Spans:
    """Fixed windows of stride_s over [start, end), on frame boundaries; a last window shorter
    than min_clip_s is dropped.  Needs no decoding."""
    frame_s = 1.0 / fps if fps else 0.0
    snap = (lambda t: round(t / frame_s) * frame_s) if frame_s else (lambda t: t)
    spans, t = [], start
    while t < end - 1e-6:
        b = min(snap(t + stride_s), end)
        if b - t >= min_clip_s - 1e-6:
            spans.append((round(t, 6), round(b, 6)))
        t = b
    windows = math.ceil((end - start) / stride_s - 1e-9)
    return Spans(spans, shots=1, too_short=windows - len(spans))
