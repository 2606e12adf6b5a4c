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


# Real videos whose frame intervals are uneven: decord hands them to PyAV (variable frame rate).
# decord__flipping_a_pancake.mkv (33 and 34 ms apart: a 1 ms time base) is even.
UNEVEN = {"mmaction2__rawvideo_part_0.mp4"}  # one interval of two frames (a dropped frame)


@pytest.mark.parametrize("mode", ["exact", "iframe"])
@pytest.mark.parametrize("choice", ["decord", "pyav"])
def test_eight_distinct_correct_frames(video, mode, choice):
    path, info, times, images = video
    # decord where it is used (not for AVI: backends_for sends those to PyAV), and PyAV alone
    backends = backends_for(info.container, ["decord", "pyav"]) if choice == "decord" else ["pyav"]
    frames = read_keyframes(str(path), 0.0, info.duration, 8, mode, backends)
    if backends[0] == "decord" and path.name in UNEVEN:
        assert frames.backend == "pyav" and "decord: variable frame rate" in frames.fallback
    else:
        assert frames.backend == backends[0], f"{backends[0]} failed and {frames.backend} answered"
        assert frames.fallback is None
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


def _coded(i: int) -> np.ndarray:
    """A flat colour that names frame i (up to 1024 frames; levels 16 apart survive the codec)."""
    return np.array([(i % 16) * 16 + 8, (i // 16 % 16) * 16 + 8, (i // 256) * 64 + 32], np.uint8)


def _frame_number(img: np.ndarray) -> int:
    r, g, b = img.reshape(-1, 3).mean(0)
    return int(round((r - 8) / 16) + 16 * round((g - 8) / 16) + 256 * round((b - 32) / 64))


def _numbered_clip(path, pts_ms: list[int], **options: str):
    """H.264 whose frame i shows _coded(i) from pts_ms[i] (explicit presentation times: a variable
    frame rate where they are uneven); `options` for libx264 (B-frames, GOP)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"preset": "ultrafast", **options}
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.broadcast_to(_coded(i), (64, 64, 3)).copy(), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _shown_at(pts_ms: list[int], targets: list[float]) -> list[int]:
    """The number of the frame on screen at each target."""
    return [int(np.searchsorted(np.asarray(pts_ms) / 1000, t + 1e-6, side="right") - 1) for t in targets]


# 25 fps for 150 frames, then 5 fps: uneven frame intervals, B-frames, an intra frame every 12 frames
VFR_PTS = [i * 40 if i < 150 else 6000 + (i - 150) * 200 for i in range(300)]
VFR_OPTIONS = {"preset": "medium", "g": "12", "keyint_min": "12", "bf": "3", "sc_threshold": "0"}


@pytest.mark.parametrize("order", [["decord", "pyav"], ["pyav", "decord"]])
@pytest.mark.parametrize("span", [(0.0, 35.8), (4.3, 21.1)])
def test_variable_frame_rate_goes_to_pyav_and_gets_the_frames_shown(tmp_path, order, span):
    """decord is not trusted with a variable frame rate (wrong frames reported on a real VFR file):
    in either order PyAV answers, with the frame on screen at every target; decord first, the
    result says why it did not answer."""
    from vtcurate.video.source import VideoSourceError

    path = _numbered_clip(tmp_path / "vfr.mp4", VFR_PTS, **VFR_OPTIONS)
    with pytest.raises(VideoSourceError, match="decord: variable frame rate"):
        read_keyframes(str(path), *span, 8, "exact", ["decord"])
    frames = read_keyframes(str(path), *span, 8, "exact", order)
    assert frames.backend == "pyav"
    if order[0] == "decord":
        assert frames.fallback == "decord: variable frame rate (frame intervals from 40.0 to 200.0 ms)"
    else:
        assert frames.fallback is None
    want = _shown_at(VFR_PTS, segment_targets(*span, 8))
    assert [_frame_number(img) for img in frames.images] == want
    assert frames.times == pytest.approx([VFR_PTS[i] / 1000 for i in want])


def test_even_frames_stay_with_decord(tmp_path):
    """A constant frame rate is not mistaken for a variable one: decord answers, exactly."""
    pts = [i * 40 for i in range(96)]
    path = _numbered_clip(tmp_path / "cfr.mp4", pts, **VFR_OPTIONS)
    frames = read_keyframes(str(path), 0.0, 3.84, 8, "exact", ["decord", "pyav"])
    assert (frames.backend, frames.fallback) == ("decord", None)
    assert [_frame_number(img) for img in frames.images] == _shown_at(pts, segment_targets(0.0, 3.84, 8))


@pytest.mark.parametrize("threads", [1, 0, 32])
def test_pyav_every_frame_after_a_seek(tmp_path, threads):
    """Each frame read alone (a seek to its intra frame, then decoding to it) is the frame shown:
    the frames just before a target are decoded in full, never skipped as non-reference frames,
    also those the decoder holds for B-frame reordering or for its frame threads (0: the
    library's count; 32: more than the reorder margin)."""
    pts = [i * 40 for i in range(96)]
    path = _numbered_clip(tmp_path / "b.mp4", pts, **{**VFR_OPTIONS, "g": "48", "keyint_min": "48"})
    got = []
    for i in range(len(pts)):
        t = (pts[i] + 20) / 1000
        frames = read_keyframes(str(path), t - 0.001, t + 0.001, 1, "exact", ["pyav"], threads)
        got.append(_frame_number(frames.images[0]))
    assert got == list(range(len(pts)))


def test_pyav_b_frame_just_after_an_intra_frame():
    """mmaction2__test.mp4 has an intra frame at 7.833 s with a B-frame after it: read alone, that
    B-frame must not be skipped as a non-reference frame (the intra frame would come back)."""
    path = SHARED_DATA / "videos" / "mmaction2__test.mp4"
    times, images = _sequential(path)
    for j in range(228, 248):
        t = (times[j] + times[j + 1]) / 2
        frames = read_keyframes(str(path), t - 1e-3, t + 1e-3, 1, "exact", ["pyav"])
        assert abs(frames.times[0] - times[j]) < 1e-3, f"frame {j}: got {frames.times[0]:.3f}s"
        assert np.abs(frames.images[0].astype(np.int16) - images[j].astype(np.int16)).mean() < 1.0


def test_pyav_slow_stretch_after_a_fast_one(tmp_path):
    """The frames decoded in full before a target are counted in frames of the stream, not in
    seconds at its average rate: 600 frames at 100 fps, then 40 at 1 fps average 10 fps, where
    24 frames' worth of seconds would be 2 frames of the slow stretch, fewer than B-frame
    reordering holds back."""
    pts = [i * 10 if i < 600 else 6000 + (i - 600) * 1000 for i in range(640)]
    path = _numbered_clip(tmp_path / "slow.mp4", pts, preset="medium", g="1000", bf="3")
    got = []
    for i in range(600, 640):
        t = (pts[i] + 500) / 1000
        frames = read_keyframes(str(path), t - 0.001, t + 0.001, 1, "exact", ["pyav"])
        got.append(_frame_number(frames.images[0]))
    assert got == list(range(600, 640))


def test_decode_jpeg_is_encode_jpegs_inverse_and_names_garbage():
    from vtcurate.video.frames import decode_jpeg, encode_jpeg
    from vtcurate.video.source import VideoSourceError

    image = np.zeros((16, 24, 3), np.uint8)
    image[:, :12] = (220, 30, 30)  # red on the left, in RGB
    back = decode_jpeg(encode_jpeg(image, 95))
    assert back.shape == (16, 24, 3) and back.flags["C_CONTIGUOUS"]
    assert back[8, 4, 0] > 180 and back[8, 4, 2] < 80  # still red: channels in RGB order both ways
    with pytest.raises(VideoSourceError, match="not a decodable JPEG"):
        decode_jpeg(b"not a jpeg")
