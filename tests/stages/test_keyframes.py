"""keyframes: each clip its frames or its own reason, per input, with the words of its detail."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from helpers import SHARED_DATA, needs_shared_data
from vtcurate.config import KeyframesConfig
from vtcurate.stages.keyframes import KeyframesStage
from vtcurate.video.probe import probe


def _still_clip(path, frames: int, fps: int = 12):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(frames):
            img = np.full((64, 64, 3), 40 * i % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _row(path, start=0.0, end=None, num_frames=None, container=None, clip_id="c"):
    info = probe(str(path), ["pyav"]) if end is None else None
    return {"clip_id": clip_id, "video": str(path), "span_start": start,
            "span_end": info.duration if info else end, "container": container,
            "num_frames": info.num_frames if info and num_frames is None else num_frames}  # fmt: skip


@needs_shared_data
def test_each_clip_gets_frames_or_its_own_reason(tmp_path):
    mp4 = SHARED_DATA / "videos" / "mmaction2__test.mp4"
    five = _still_clip(tmp_path / "five.mp4", 5)  # 5 frames in the file: fewer than 8
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(mp4.read_bytes()[:3000])  # a header and no frames
    rows = [
        _row(mp4, clip_id="good"),
        _row(five, clip_id="five"),
        # the probe did not count frames (a stream without an index): found when decoding instead
        {**_row(five, clip_id="five-uncounted"), "num_frames": None},
        # a span of 0.1 s at 30 fps: 8 targets land on 3 frames
        _row(mp4, start=2.0, end=2.1, num_frames=300, clip_id="short-span"),
        _row(broken, start=0.0, end=5.0, num_frames=300, clip_id="broken"),
    ]
    stage = KeyframesStage(KeyframesConfig(short_side=32))
    out = stage(pa.Table.from_pylist(rows)).to_pylist()
    got = {r["clip_id"]: (r["drop_reason"], r["drop_detail"]) for r in out}
    assert got["good"] == (None, None) and len(out[0]["frames"]) == 8
    assert got["five"][0] == "too_few_frames" and got["five"][1] == "5 frames < 8"
    assert got["five-uncounted"][0] == "too_few_frames" and "distinct frames" in got["five-uncounted"][1]
    assert got["short-span"][0] == "too_few_frames" and "only 3 distinct frames" in got["short-span"][1]
    assert got["broken"][0] == "decode_failed" and "pyav" in got["broken"][1]
    # rejected before decoding: no frames; rejected after: its frames stay for the report's thumbnails
    assert [r["frames"] is None for r in out[1:]] == [True, False, False, True]


@needs_shared_data
def test_the_row_says_which_backend_answered_and_why_the_first_did_not():
    uneven = SHARED_DATA / "videos_edge" / "mmaction2__rawvideo_part_0.mp4"  # a dropped frame
    even = SHARED_DATA / "videos" / "mmaction2__test.mp4"
    stage = KeyframesStage(KeyframesConfig(short_side=32, backends=["decord", "pyav"]))
    rows = [_row(uneven, clip_id="uneven"), _row(even, clip_id="even")]
    out = stage(pa.Table.from_pylist(rows)).to_pylist()
    assert out[0]["keyframe_backend"] == "pyav"
    assert out[0]["keyframe_fallback"].startswith("decord: variable frame rate (frame intervals from")
    assert (out[1]["keyframe_backend"], out[1]["keyframe_fallback"]) == ("decord", None)
