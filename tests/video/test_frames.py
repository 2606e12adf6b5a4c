"""Key-frames of every real video, checked against frames read sequentially."""

import numpy as np
import pytest

from helpers import SHARED_DATA, needs_shared_data, real_videos
from vtcurate.video.frames import backends_for, read_keyframes, segment_targets
from vtcurate.video.probe import probe

pytestmark = needs_shared_data


def _sequential(path):
    """Every frame with its presentation time, by linear decoding (the ground truth)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        t0, tb = stream.start_time or 0, float(stream.time_base)
        frames = [
            ((f.pts - t0) * tb, f.to_ndarray(format="rgb24"))
            for f in container.decode(stream)
            if f.pts is not None
        ]
    frames.sort(key=lambda x: x[0])
    return np.array([t for t, _ in frames]), [img for _, img in frames]


@pytest.fixture(scope="module", params=real_videos(), ids=lambda p: p.name)
def video(request):
    path = request.param
    info = probe(str(path), ["decord", "pyav"])
    return path, info, *_sequential(path)


@pytest.mark.parametrize("mode", ["exact", "iframe"])
@pytest.mark.parametrize("choice", ["decord", "pyav"])
def test_eight_distinct_correct_frames(video, mode, choice):
    path, info, times, images = video
    # decord where it is used (not for AVI: backends_for sends those to PyAV), and PyAV alone
    backends = backends_for(info.container, ["decord", "pyav"]) if choice == "decord" else ["pyav"]
    frames = read_keyframes(str(path), 0.0, info.duration, 8, mode, backends)
    assert frames.backend == backends[0], f"{backends[0]} failed and {frames.backend} answered"
    assert len(frames.images) == 8
    assert len(set(frames.times)) == 8, f"repeated frames: {frames.times}"
    assert frames.times == sorted(frames.times)
    step = info.duration / 8
    for i, (img, t) in enumerate(zip(frames.images, frames.times)):
        j = int(np.argmin(np.abs(times - t)))
        assert abs(times[j] - t) < 1e-3, f"frame time {t} is not a frame of the video"
        diff = np.abs(img.astype(np.int16) - images[j].astype(np.int16)).mean()
        assert diff < 1.0, f"frame {i} differs from the sequential frame at {t:.3f}s (mean |diff| {diff:.2f})"
        assert i * step - 1e-6 <= t < (i + 1) * step, f"frame {i} at {t:.3f}s is outside its segment"
    if mode == "exact":
        # the frame displayed at the middle of each segment
        for target, t in zip(segment_targets(0.0, info.duration, 8), frames.times):
            expected = times[np.searchsorted(times, target + 1e-6, side="right") - 1]
            assert abs(t - expected) < 1e-3, f"got {t:.3f}s; frame shown at {target:.3f}s is {expected:.3f}s"


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_backends_agree_on_mp4(backend):
    path = SHARED_DATA / "videos" / "mmaction2__test.mp4"
    times, images = _sequential(path)
    frames = read_keyframes(str(path), 2.0, 8.0, 8, "exact", [backend])
    assert frames.backend == backend
    for target, t, img in zip(segment_targets(2.0, 8.0, 8), frames.times, frames.images):
        j = int(np.searchsorted(times, target + 1e-6, side="right") - 1)
        assert abs(times[j] - t) < 1e-3
        assert np.abs(img.astype(np.int16) - images[j].astype(np.int16)).mean() < 1.0


def test_iframe_mode_lands_on_intra_frames():
    import av

    path = SHARED_DATA / "videos" / "pyscenedetect__testvideo.mp4"
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        key_times = {
            round(float((p.pts - (s.start_time or 0)) * s.time_base), 3)
            for p in c.demux(s)
            if p.is_keyframe and p.pts is not None
        }
    info = probe(str(path), ["pyav"])
    frames = read_keyframes(str(path), 0.0, info.duration, 8, "iframe", ["pyav"])
    on_intra = sum(round(t, 3) in key_times for t in frames.times)
    step = info.duration / 8
    segments_with_intra = sum(any(i * step <= k < (i + 1) * step for k in key_times) for i in range(8))
    assert on_intra == segments_with_intra


def count_pyav_decodes(monkeypatch) -> list:
    """Make the PyAV reader record the pts of every frame it decodes; returns that list."""
    from contextlib import contextmanager

    from vtcurate.video import frames as frames_mod

    decoded: list = []
    real_open = frames_mod.open_av_video

    class Counting:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

        def decode(self, *args, **kwargs):
            for frame in self._c.decode(*args, **kwargs):
                decoded.append(frame.pts)
                yield frame

    @contextmanager
    def counting_open(src):
        with real_open(src) as (container, stream):
            yield Counting(container), stream

    monkeypatch.setattr(frames_mod, "open_av_video", counting_open)
    return decoded


def test_pyav_iframe_mode_decodes_one_frame_per_segment(tmp_path, monkeypatch):
    import random

    from vtcurate.demo.corpus import ClipSpec, render, write_h264

    path = tmp_path / "gop.mp4"  # 8 s at 12 fps with a 1 s GOP: an intra frame in every segment
    write_h264(path, render(ClipSpec("red", "circle", "from left to right"), random.Random(0), seconds=8.0))
    decoded = count_pyav_decodes(monkeypatch)
    frames = read_keyframes(str(path), 0.0, 8.0, 8, "iframe", ["pyav"])
    assert frames.times == [float(i) for i in range(8)]
    assert len(decoded) == 8


def _gop_clip(path, gop: int, seconds: float = 8.0):
    import av

    fps = 12
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "preset": "ultrafast"}
        for i in range(int(seconds * fps)):
            img = np.full((64, 64, 3), (i * 5) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("gop", [1000, 12])  # one GOP for the whole clip; 1 s GOPs
def test_pyav_exact_never_decodes_more_than_one_sequential_pass(tmp_path, monkeypatch, gop):
    """One long GOP: a single pass, not a GOP run from the start per target (8x the work).
    Short GOPs: at most one GOP run per target.  Either way the frames are the exact ones."""
    import av

    from vtcurate.video import frames as frames_mod

    seconds = 40.0  # 480 frames: a GOP run per target (8 x 16) is well under a sequential pass
    path = _gop_clip(tmp_path / f"g{gop}.mp4", gop, seconds)
    decoded = count_pyav_decodes(monkeypatch)
    frames = read_keyframes(str(path), 0.0, seconds, 8, "exact", ["pyav"])
    step = seconds / 8
    last_target = round(7.5 * step * 12)  # frame index shown at the last segment's middle
    if gop >= 480:
        assert len(decoded) <= last_target + 1 + frames_mod.LOOKAHEAD_FRAMES
    else:
        bound = 8 * (gop + frames_mod.LOOKAHEAD_FRAMES)
        assert bound < last_target / 2  # the bound can fail: decoding from the start would break it
        assert len(decoded) <= bound
    with av.open(str(path)) as c:
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for img, t in zip(frames.images, frames.times):
        assert np.array_equal(img, every[round(t * 12)])
    assert frames.times == pytest.approx([round((i + 0.5) * step * 12) / 12 for i in range(8)])


def test_targets_within_one_frame_interval_get_the_same_frame(tmp_path):
    """At 2 fps and 8 targets over 3 s, two targets fall in one frame's interval: both backends
    must return the frame on screen, never the next one."""
    import av

    path = tmp_path / "slow.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=2)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(6):
            img = np.full((64, 64, 3), i * 40, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    targets = segment_targets(0.0, 3.0, 8)
    want = [np.floor(t * 2) / 2 for t in targets]  # the frame shown at t (2 fps)
    for backend in ("pyav", "decord"):
        frames = read_keyframes(str(path), 0.0, 3.0, 8, "exact", [backend])
        assert frames.times == pytest.approx(want), backend
