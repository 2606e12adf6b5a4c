"""Bad input never crashes a run or loses a row; misuse of a run directory is refused."""

import json
import os
import random
import shutil
import tarfile
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

from helpers import CONFIGS, shard_members
from vtcurate.config import FLOW, load_config
from vtcurate.errors import UserError
from vtcurate.pipeline.executor import RunDirConflict, run_pipeline
from vtcurate.pipeline.partition import STAGE_ERROR, apply_stage
from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.stats import load_stats
from vtcurate.stages.base import Resources, Stage, set_column, with_decisions
from vtcurate.storage import read_columns


class Fragile(Stage):
    """Raises on captions containing 'boom', as a buggy stage would."""

    name = "fragile"
    output_columns = ("n_chars",)

    @property
    def resources(self) -> Resources:
        return Resources(batch_size=4)

    def __call__(self, batch: pa.Table) -> pa.Table:
        caps = batch.column("caption").to_pylist()
        if any("boom" in c for c in caps):
            raise ValueError("boom in caption")
        batch = set_column(batch, "n_chars", [len(c) for c in caps], pa.int64())
        return with_decisions(batch, [None] * len(caps), [None] * len(caps))


def test_a_raising_row_is_rejected_alone():
    table = pa.table({"clip_id": [f"c{i}" for i in range(10)], "caption": ["ok"] * 3 + ["boom"] + ["ok"] * 6})
    out = apply_stage(Fragile(None), table).to_pylist()
    assert [r["clip_id"] for r in out] == [f"c{i}" for i in range(10)]
    assert [r["drop_reason"] for r in out] == [None] * 3 + [STAGE_ERROR] + [None] * 6
    assert "ValueError: boom in caption" in out[3]["drop_detail"]
    assert [r["n_chars"] for r in out][:3] == [2, 2, 2]


def _write_video(path, frames, pts_ms=None, audio_garbage=False, size=None):
    """H.264 mp4 with PyAV: explicit presentation times (variable frame rate) or 12 fps, and
    optionally an AAC stream whose packets are random bytes."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.height, stream.width = size or frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"preset": "ultrafast"}
        if pts_ms:
            stream.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("aac", rate=44100) if audio_garbage else None
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
            if audio:
                packet = av.Packet(random.Random(i).randbytes(200))
                packet.stream, packet.pts, packet.dts = audio, i * 1024, i * 1024
                packet.time_base = Fraction(1, 44100)
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _hostile_media(d):
    import cv2

    from vtcurate.demo.corpus import ClipSpec, render, write_h264

    frames = render(ClipSpec("red", "circle", "from left to right"), random.Random(0))
    write_h264(d / "ok.mp4", frames)
    data = (d / "ok.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    # the middle fifth (where the middle key-frames' seeks land) overwritten with noise
    middle = len(data) // 2
    noise = random.Random(1).randbytes(len(data) // 5)
    (d / "corrupt-middle.mp4").write_bytes(data[:middle] + noise + data[middle + len(noise) :])
    cv2.imwrite(str(d / "still.png"), frames[0])
    (d / "still.png").rename(d / "image.mp4")
    write_h264(d / "one-frame.mp4", frames[:1])
    _write_video(d / "vfr.mp4", frames, pts_ms=[sum(150 if j % 3 == 0 else 40 for j in range(i)) for i in
                                                range(len(frames))])  # fmt: skip
    _write_video(d / "broken-audio.mp4", frames, audio_garbage=True)
    huge = np.zeros((4096, 4608, 3), np.uint8)  # 18.9 megapixels, above the default max_pixels
    _write_video(d / "huge.mp4", [huge])
    (d / "zero.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(os.urandom(4096))
    (d / "dir.mp4").mkdir()
    os.symlink(d / "gone.mp4", d / "dangling.mp4")


def test_hostile_manifest_end_to_end(tmp_path, demo_llm):
    """Every hostile input is rejected with its own reason or normalised and kept; the run goes on;
    rows in = kept + rejected at every stage; no tar member can leave its directory."""
    good = "a red circle moves from left to right"
    _hostile_media(tmp_path)
    rows = [
        {"video": "ok.mp4", "caption": good, "id": "ok"},
        {"video": "zero.mp4", "caption": good},
        {"video": "random.mp4", "caption": good},
        {"video": "truncated.mp4", "caption": good},
        {"video": "image.mp4", "caption": good},
        {"video": "one-frame.mp4", "caption": good},
        {"video": "huge.mp4", "caption": good},
        {"video": "corrupt-middle.mp4", "caption": good},
        {"video": "vfr.mp4", "caption": good, "id": "vfr"},
        {"video": "broken-audio.mp4", "caption": good, "id": "broken-audio"},
        {"video": "dir.mp4", "caption": good},
        {"video": "dangling.mp4", "caption": good},
        {"video": "nowhere.mp4", "caption": good},
        {"video": "ok.mp4", "caption": "", "id": "empty"},
        {"video": "ok.mp4", "caption": "a dog runs " * 10_000, "id": "huge-caption"},  # 110 KB
        {"video": "ok.mp4", "caption": "\u202e\u200f🐶🔥", "id": "emoji-only"},
        {"video": "ok.mp4", "caption": ["not", "text"], "id": "list"},
        {"video": "ok.mp4", "caption": good, "id": "ok"},
        {"video": "ok.mp4", "caption": good, "id": "../../etc/passwd", "start": 0.2, "end": 1.8},
        {"video": "ok.mp4", "caption": good, "id": "nul\x00id/x"},
        {"video": "ok.mp4", "caption": "a red\x07 circle\x1b moves\x00 from left to right", "id": "ctrl"},
        {"video": "ok.mp4", "caption": "\u202ba red circle\u202c moves \u200ffrom left to right",
         "id": "rtl"},
        {"video": "ok.mp4", "id": "html",
         "caption": "<script>alert(1)</script><b>a red circle</b> moves from left to right"},
    ]  # fmt: skip
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.insert(3, "{broken json")
    lines.append('{"video": "ok.mp4", "caption": "a red circle \\ud800 moves from left to right", "id": "s"}')
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    # the CPU stages: the rows share one video, so dedup would rightly keep only one of them
    stages = "stages=[ingest, langid, keyframes, shard]"
    config = load_config(
        CONFIGS / "demo.yaml", [*demo_llm, "partition_rows=3", "report.enabled=false", stages]
    )
    run_pipeline(config, str(manifest), tmp_path / "run", runner="local")
    stats = load_stats(tmp_path / "run")
    assert stats[0]["rows_in"] == len(lines)
    for s in stats:
        assert s["rows_in"] == s["kept"] + s["rejected"]
    assert {s["stage"]: s["rejected_by_reason"] for s in stats} == {
        "ingest": {"unreadable_video": 3, "not_a_file": 1, "missing_file": 2, "too_short": 2, "too_large": 1,
                   "bad_manifest_row": 2, "duplicate_id": 1, "empty_caption": 1},
        "langid": {"caption_too_long": 1, "empty_caption": 1},
        "keyframes": {"decode_failed": 1},
        "shard": {},
    }  # fmt: skip
    rd = RunDir(tmp_path / "run")
    rejected = read_columns([p for s in FLOW for p in rd.stage(s).rejected_parts()], ["drop_detail"])
    assert all(rejected["drop_detail"])  # every rejection says what exactly
    kept = read_columns(rd.stage("shard").kept_parts(), ["clip_id", "caption"])
    assert sorted(kept["clip_id"]) == sorted(
        ["ok", "vfr", "broken-audio", "../../etc/passwd", "nul\x00id/x", "ctrl", "rtl", "html", "s"]
    )
    for caption in kept["caption"]:  # control, bidi and HTML normalised away; the lone surrogate is "?"
        assert caption.replace("?", "").replace(" ", "") == good.replace(" ", ""), caption
    samples = shard_members(tmp_path / "run")  # also asserts no member name leaves its directory
    assert len(samples) == len(kept["clip_id"])
    out = tmp_path / "extracted"
    for tar_path in (tmp_path / "run" / "shards").rglob("*.tar"):
        with tarfile.open(tar_path) as tar:
            tar.extractall(out, filter="data")  # raises on a member that would escape `out`
    assert all(p.parent == out for p in out.rglob("*"))


def test_everything_rejected_still_finishes(tmp_path, demo_llm):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"video": "nope.mp4", "caption": "a dog runs in a park"}\n')
    config = load_config(CONFIGS / "demo.yaml", [*demo_llm, "report.enabled=false"])
    stats = run_pipeline(config, str(manifest), tmp_path / "run", runner="local")
    assert [s["kept"] for s in stats] == [0] * len(FLOW)
    assert json.loads((tmp_path / "run" / "shards" / "index.json").read_text())["samples"] == 0


def test_changing_the_stage_list_does_not_reuse_stale_stages(demo_corpus, tmp_path, demo_llm):
    manifest = str(demo_corpus / "manifest.jsonl")
    skip_langid = load_config(
        CONFIGS / "demo.yaml", [*demo_llm, "stages=[ingest, keyframes, shard]", "report.enabled=false"]
    )
    run_pipeline(skip_langid, manifest, tmp_path, runner="local")
    full = load_config(CONFIGS / "demo.yaml", [*demo_llm, "report.enabled=false"])
    with pytest.raises(RunDirConflict, match="keyframes finished earlier on the output of ingest"):
        run_pipeline(full, manifest, tmp_path, runner="local")


def test_fresh_refuses_a_directory_that_is_not_a_run(tmp_path, demo_corpus, demo_llm):
    (tmp_path / "precious.txt").write_text("keep me")
    config = load_config(CONFIGS / "demo.yaml", demo_llm)
    with pytest.raises(UserError, match="not a run directory"):
        run_pipeline(config, str(demo_corpus / "manifest.jsonl"), tmp_path, runner="local", fresh=True)
    assert (tmp_path / "precious.txt").exists()


def test_stats_record_the_worker_plan(local_run):
    for s in load_stats(local_run):
        assert s["workers"]["workers"] == 1 and s["workers"]["batch_size"] > 0
        assert (s["decide_workers"] is not None) == (s["stage"] in ("clip_filter", "dedup"))  # run-wide plans
        assert s["worker_cpu_s"] > 0 and s["worker_peak_rss_mb"] > 0
        assert s["upstream"] == ("manifest" if s["stage"] == "ingest" else FLOW[FLOW.index(s["stage"]) - 1])


def test_partial_stage_from_another_upstream_is_redone(demo_corpus, tmp_path, demo_llm):
    manifest = str(demo_corpus / "manifest.jsonl")
    overrides = ["stages=[ingest, keyframes, shard]", "report.enabled=false", "partition_rows=8"]
    run_pipeline(
        load_config(CONFIGS / "demo.yaml", [*demo_llm, *overrides]), manifest, tmp_path, runner="local"
    )
    keyframes = RunDir(tmp_path).stage("keyframes").path
    (keyframes / "_SUCCESS").unlink()  # as if the driver died in keyframes
    sorted((keyframes / "kept").glob("*.parquet"))[-1].unlink()
    shutil.rmtree(RunDir(tmp_path).stage("shard").path)
    full = load_config(CONFIGS / "demo.yaml", [*demo_llm, "report.enabled=false", "partition_rows=8"])
    stats = {s["stage"]: s for s in run_pipeline(full, manifest, tmp_path, runner="local")}
    assert stats["keyframes"]["resumed_partitions"] == 0  # nothing made from ingest's output reused
    assert stats["keyframes"]["rows_in"] == stats["langid"]["kept"]
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert {lang for s in index["shards"] for lang in s["languages"]} == {"en", "zh"}


def test_changed_manifest_contents_are_refused(demo_corpus, tmp_path, demo_llm):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text((demo_corpus / "manifest.jsonl").read_text())
    config = load_config(CONFIGS / "demo.yaml", [*demo_llm, "report.enabled=false", "stages=[ingest]"])
    run_pipeline(config, str(manifest), tmp_path / "run", runner="local")
    manifest.write_text(manifest.read_text() + '{"video": "x.mp4", "caption": "one more row"}\n')
    with pytest.raises(RunDirConflict, match="input contents"):
        run_pipeline(config, str(manifest), tmp_path / "run", runner="local")


def test_relative_paths_are_resolved(demo_corpus, tmp_path, monkeypatch, demo_llm):
    from vtcurate.report.collect import collect

    monkeypatch.chdir(demo_corpus.parent)
    config = load_config(
        CONFIGS / "demo.yaml", [*demo_llm, "report.enabled=false", "stages=[ingest, langid]"]
    )
    run_pipeline(config, f"{demo_corpus.name}/manifest.jsonl", "rel-run", runner="local")  # both relative
    info = json.loads((demo_corpus.parent / "rel-run" / "run.json").read_text())
    assert info["input"] == str(demo_corpus / "manifest.jsonl")
    monkeypatch.chdir(tmp_path)  # the report finds the answer key from anywhere
    report = collect(demo_corpus.parent / "rel-run")
    assert report["answer_key"]["summary"]["caught"] == 9  # ingest and langid catch all nine
