"""The motion and text_overlay stages: their cost per clip on one core, against the keyframes stage's
own cost on the same clip (the decoding every clip pays already), on real videos and a demo clip."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from bench.common import Row, median_time, ratio_row

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
# (label, file): 720p with a copyright line on every frame (OCR detects and recognises), 720p
# without text (detection only), and the demo's 128 px clips (decoded at their own size)
REAL = [("720p text", "pyscenedetect__testvideo.mp4"), ("720p no text", "dataflow__test_video.avi")]


def _keyframes_row(video: Path, short_side: int) -> tuple[dict, float]:
    """A row as the keyframes stage leaves it, and the seconds that stage takes on it."""
    import pyarrow as pa

    from vtcurate.config import KeyframesConfig
    from vtcurate.stages.keyframes import KeyframesStage
    from vtcurate.video.probe import probe

    info = probe(str(video), ["pyav"])
    row = {"clip_id": video.stem, "video": str(video), "span_start": 0.0, "span_end": info.duration,
           "width": info.width, "height": info.height, "container": info.container}  # fmt: skip
    stage = KeyframesStage(KeyframesConfig(short_side=short_side))
    table = pa.Table.from_pylist([row])
    seconds = median_time(lambda: stage(table), 3)
    return stage(table).to_pylist()[0], seconds


def _stage_seconds(stage, row: dict, reps: int) -> float:
    import pyarrow as pa

    stage.setup()
    table = pa.Table.from_pylist([row])
    return median_time(lambda: stage(table), reps)


def _demo_clip(folder: Path) -> Path:
    from vtcurate.demo.corpus import ClipSpec, render, write_h264

    path = folder / "demo-clip.mp4"
    write_h264(path, render(ClipSpec("red", "circle", "from left to right"), random.Random(0)))
    return path


def _rows(label: str, video: Path, short_side: int, reps: int) -> list[Row]:
    from vtcurate.config import MotionConfig, TextOverlayConfig
    from vtcurate.stages.motion import MotionStage
    from vtcurate.stages.text_overlay import TextOverlayStage

    row, kf = _keyframes_row(video, short_side)
    base = f"keyframes stage ({short_side} px)"
    variants = [
        ("motion", "4 pairs (default)", MotionStage(MotionConfig())),
        ("motion", "pairs 0 (key-frames only)", MotionStage(MotionConfig(pairs=0))),
        ("text_overlay", "ocr_short_side 360 (default), 4 frames", TextOverlayStage(TextOverlayConfig())),
        ("text_overlay", "ocr_short_side 360, 4 frames, seek exact",
         TextOverlayStage(TextOverlayConfig(seek="exact"))),
        ("text_overlay", "ocr_short_side 224, 4 frames",
         TextOverlayStage(TextOverlayConfig(ocr_short_side=224))),
        ("text_overlay", "ocr_short_side 360, all 8 frames",
         TextOverlayStage(TextOverlayConfig(ocr_frames=0))),
    ]  # fmt: skip
    out = []
    for stage_name, name, stage in variants:
        seconds = _stage_seconds(stage, row, reps)
        out.append(ratio_row(f"{stage_name} {label}", name, seconds, "s/clip", base, kf,
                             higher_is_better=False))  # fmt: skip
    return out


def run(reps: int) -> list[Row]:
    rows = []
    for label, name in REAL:
        if (SHARED / name).exists():
            rows += _rows(label, SHARED / name, 224, reps)  # default.yaml's key-frames
    with tempfile.TemporaryDirectory() as tmp:
        rows += _rows("demo 128 px", _demo_clip(Path(tmp)), 128, reps)  # demo.yaml's key-frames
    return rows
