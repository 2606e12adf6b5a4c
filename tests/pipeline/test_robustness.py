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
from vtcurate.pipeline.stats import accounted, load_stats
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


KEPT = "kept"
# Each hostile input's fate over the whole flow: kept, or (stage, reason, words its detail must hold).
HOSTILE = [
    ({"video": "ok.mp4", "id": "ok"}, KEPT),
    ({"video": "zero.mp4"}, ("ingest", "unreadable_video", ["empty file", "zero.mp4"])),
    ({"video": "random.mp4"}, ("ingest", "unreadable_video", ["decord:", "pyav:", "Invalid data"])),
    ("{broken json", ("ingest", "bad_manifest_row", ["invalid JSON"])),
    ({"video": "truncated.mp4"}, ("ingest", "unreadable_video", ["decord:", "pyav:", "truncated.mp4"])),
    ({"video": "image.mp4"}, ("ingest", "too_short", ["< min_duration 0.5s"])),
    ({"video": "one-frame.mp4"}, ("ingest", "too_short", ["0.083s < min_duration"])),
    ({"video": "huge.mp4"}, ("ingest", "too_large", ["4608x4096 frames > max_pixels"])),
    ({"video": "corrupt-middle.mp4"}, ("keyframes", "decode_failed", ["pyav:", "decord:"])),
    ({"video": "vfr.mp4", "id": "vfr"}, KEPT),
    ({"video": "broken-audio.mp4", "id": "broken-audio"}, KEPT),
    ({"video": "dir.mp4"}, ("ingest", "not_a_file", ["is a directory", "dir.mp4"])),
    ({"video": "dangling.mp4"}, ("ingest", "missing_file", ["no such file", "dangling.mp4"])),
    ({"video": "nowhere.mp4"}, ("ingest", "missing_file", ["no such file", "nowhere.mp4"])),
    ({"video": "ok.mp4", "caption": "", "id": "empty"}, ("ingest", "empty_caption", ["no timed text"])),
    ({"video": "ok.mp4", "caption": "a dog runs " * 10_000, "id": "huge-caption"},  # 110 KB
     ("langid", "caption_too_long", ["30000 words > 80"])),
    ({"video": "ok.mp4", "caption": "\u202e\u200f🐶🔥", "id": "emoji-only"},
     ("langid", "empty_caption", ["nothing left after normalisation"])),
    ({"video": "ok.mp4", "caption": ["not", "text"], "id": "list"},
     ("ingest", "bad_manifest_row", ["caption is a list"])),
    ({"video": "ok.mp4", "id": "ok"}, ("ingest", "duplicate_id", ["first seen at row 1"])),
    ({"video": "ok.mp4", "id": "../../etc/passwd", "start": 0.2, "end": 1.8}, KEPT),
    ({"video": "ok.mp4", "id": "nul\x00id/x"}, KEPT),
    ({"video": "ok.mp4", "caption": "a red\x07 circle\x1b moves\x00 from left to right", "id": "ctrl"}, KEPT),
    ({"video": "ok.mp4", "caption": "\u202ba red circle\u202c moves \u200ffrom left to right", "id": "rtl"},
     KEPT),
    ({"video": "ok.mp4", "id": "html",
      "caption": "<script>alert(1)</script><b>a red circle</b> moves from left to right"}, KEPT),
    ('{"video": "ok.mp4", "caption": "a red circle \\ud800 moves from left to right", "id": "s"}', KEPT),
]  # fmt: skip


def test_hostile_manifest_end_to_end(tmp_path, demo_llm, monkeypatch):
    """Every hostile input meets its own fate over the whole flow (its reason, at its stage, with
    the words of its detail) or is normalised and kept; the run goes on; every stage accounts for
    its rows; an oversized frame is refused before any decoder opens it; no tar member can leave
    its directory."""
    from vtcurate.video import probe

    good = "a red circle moves from left to right"
    _hostile_media(tmp_path)
    lines = [row if isinstance(row, str) else json.dumps({"caption": good, **row}, ensure_ascii=False)
             for row, _ in HOSTILE]  # fmt: skip
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    decoded = []  # every file a probe backend opened
    for name, backend in list(probe.PROBES.items()):
        monkeypatch.setitem(probe.PROBES, name, lambda src, b=backend: decoded.append(str(src)) or b(src))
    # dedup off: the rows share one video, so it would rightly keep only one of them
    overrides = ["partition_rows=3", "report.enabled=false", "split.method=scenedetect",
                 "dedup.near_duplicates=false", "dedup.captions=false"]  # fmt: skip
    config = load_config(CONFIGS / "demo.yaml", [*demo_llm, *overrides])
    run_pipeline(config, str(manifest), tmp_path / "run", runner="local")
    stats = load_stats(tmp_path / "run")
    assert [s["stage"] for s in stats] == list(FLOW) and stats[0]["rows_in"] == len(lines)
    for s in stats:
        assert accounted(s) == s["rows_in"], s["stage"]
    assert decoded and not any("huge.mp4" in src for src in decoded)  # too_large from the header alone

    rd = RunDir(tmp_path / "run")
    fates: dict[int, list] = {}  # manifest line (1-based) -> every fate it met
    for stage in FLOW:
        rejected = read_columns(rd.stage(stage).rejected_parts(), ["row", "drop_reason", "drop_detail"])
        for row, reason, detail in zip(rejected["row"], rejected["drop_reason"], rejected["drop_detail"]):
            fates.setdefault(row, []).append((stage, reason, detail))
    kept = read_columns(rd.stage("shard").kept_parts(), ["row", "caption_original", "sample_key"])
    for row in kept["row"]:
        fates.setdefault(row, []).append(KEPT)
    assert sorted(fates) == list(range(1, len(lines) + 1))
    for line, (_, expected) in enumerate(HOSTILE, start=1):
        (fate,) = fates[line]  # exactly one fate per input
        if expected == KEPT:
            assert fate == KEPT, (line, fate)
            continue
        stage, reason, words = expected
        assert fate[:2] == (stage, reason), (line, fate)
        assert all(w in fate[2] for w in words), (line, fate[2], words)

    for caption in kept["caption_original"]:  # control, bidi, HTML normalised away; a lone surrogate is "?"
        assert caption.replace("?", "").replace(" ", "") == good.replace(" ", ""), caption
    samples = shard_members(tmp_path / "run")  # also asserts no member name leaves its directory
    assert sorted(samples) == sorted(kept["sample_key"])
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
        assert (s["decide_workers"] is not None) == (s["stage"] in ("clip_filter", "dedup", "semantic_dedup"))
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
