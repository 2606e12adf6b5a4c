"""Key-frame extraction: the keyframes stage's reader against decoding every frame (PyAV) and
against the ffmpeg CLI's select filter (video2dataset's approach), in clips/s on one core."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import OUT, Row, median_time, ratio_row

N = 8
# (name, seconds, GOP in frames at 30 fps; None = x264's default keyint 250 with scene cuts)
GENERATED = [("720p-30s-gop2s", 30, 60), ("720p-120s-gop2s", 120, 60), ("720p-30s-keyint250", 30, None)]
SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def generate(name: str, seconds: int, gop: int | None) -> Path:
    """A 1280x720 30 fps H.264 clip of moving test patterns (cached under bench/out/clips)."""
    path = OUT / "clips" / f"{name}.mp4"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if not shutil.which("ffmpeg"):
        raise RuntimeError("the ffmpeg CLI is needed to generate benchmark clips (make bench installs it)")
    gop_args = ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"] if gop else []
    tmp = path.with_suffix(".tmp.mp4")
    source = f"testsrc2=size=1280x720:rate=30:duration={seconds}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset", "veryfast",
         "-pix_fmt", "yuv420p", *gop_args, str(tmp)],
        check=True,
    )  # fmt: skip
    tmp.rename(path)
    return path


def _duration(path: Path) -> float:
    from vtcurate.video.probe import probe

    return probe(str(path), ["decord", "pyav"]).duration


def full_decode(path: Path, duration: float) -> None:
    """Baseline (a): decode every frame with PyAV and keep the 8 shown at the segment middles."""
    import av

    from vtcurate.video.frames import segment_targets

    targets = segment_targets(0.0, duration, N)
    chosen = [None] * N
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            for i, target in enumerate(targets):
                if frame.time is not None and frame.time <= target + 1e-6:
                    chosen[i] = frame
    if not all(chosen):
        raise RuntimeError(f"full decode of {path} missed a target")
    [frame.to_ndarray(format="rgb24") for frame in chosen]


def ffmpeg_select(path: Path, duration: float) -> None:
    """Baseline (b): the ffmpeg CLI's fps filter writing 8 JPEGs (video2dataset's approach)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["ffmpeg", "-v", "error", "-threads", "1", "-i", str(path), "-vf", f"fps={N}/{duration:.3f}",
             "-frames:v", str(N), f"{tmp}/%02d.jpg"],
            check=True,
        )  # fmt: skip


def stage_reader(path: Path, duration: float, mode: str, backends: list[str]) -> None:
    from vtcurate.video.frames import read_keyframes

    read_keyframes(str(path), 0.0, duration, N, mode, backends, threads=1)


def _clip_rows(name: str, path: Path, reps: int) -> list[Row]:
    duration = _duration(path)
    base = median_time(lambda: full_decode(path, duration), reps)
    exact_target, iframe_target = TARGETS.get(name, (None, None))
    variants = [
        ("stage exact (default: PyAV, decord fallback)", "exact", ["pyav", "decord"], exact_target),
        ("stage exact, decord first", "exact", ["decord", "pyav"], None),
        ("stage iframe (default: PyAV, decord fallback)", "iframe", ["pyav", "decord"], iframe_target),
        ("stage iframe, decord first", "iframe", ["decord", "pyav"], None),
    ]
    timed = [
        (label, median_time(lambda m=mode, b=backends: stage_reader(path, duration, m, b), reps), target)
        for label, mode, backends, target in variants
    ]
    if shutil.which("ffmpeg"):
        timed.append(
            ("ffmpeg CLI fps filter", median_time(lambda: ffmpeg_select(path, duration), reps), None)
        )
    return [
        ratio_row(
            f"keyframes {name}", label, 1 / t, "clips/s/core", "PyAV full decode", 1 / base, target=target
        )
        for label, t, target in timed
    ]


# exact and iframe targets (ratio to a full decode) that the benchmark issue sets
TARGETS = {"720p-30s-gop2s": (3, 20), "720p-120s-gop2s": (10, 60)}


def run(reps: int) -> list[Row]:
    clips = [(name, generate(name, s, g)) for name, s, g in GENERATED]
    if SHARED_VIDEOS.is_dir():
        clips += [(f"real:{p.stem}", p) for p in sorted(SHARED_VIDEOS.iterdir()) if p.suffix == ".mp4"]
    return [row for name, path in clips for row in _clip_rows(name, path, reps)]
