"""Inputs as users have them: manifests with their own column names, a folder of videos with
sidecar files, and video2dataset's WebDataset tars read in place."""

from __future__ import annotations

import csv
import json
import shutil
import tarfile

import pytest

from helpers import CONFIGS, SHARED_DATA, needs_shared_data
from vtcurate.config import ConfigError, ManifestConfig, load_config
from vtcurate.pipeline.executor import RunDirConflict, run_pipeline
from vtcurate.pipeline.inputs import kind
from vtcurate.pipeline.manifest import ManifestError, manifest_digest, read_manifest
from vtcurate.pipeline.rundir import RunDir
from vtcurate.storage import read_columns

V2D = SHARED_DATA / "pairs" / "video2dataset_shard"
REAL_CLIPS = ("0000008_00001", "0000030_00005", "0000038_00003")  # the others are JPEG stills named .mp4
STILLS = ("000000014", "000000025", "000000356")


def _ingest(tmp_path, source: str, *overrides: str, until: str = "ingest") -> dict[str, dict]:
    """The input through ingest (and keyframes) with the local runner: {clip_id: row} of the last
    stage's kept and rejected rows."""
    stages = "stages=[ingest]" if until == "ingest" else "stages=[ingest, keyframes]"
    config = load_config(CONFIGS / "demo.yaml", [stages, "report.enabled=false", *overrides])
    run_pipeline(config, source, tmp_path / "run", runner="local")
    sdir = RunDir(tmp_path / "run").stage(until)
    cols = ["clip_id", "video", "caption", "duration", "drop_reason", "drop_detail", "subtitles"]
    rows = {}
    for parts in (sdir.kept_parts(), sdir.rejected_parts()):
        table = read_columns(parts, cols)
        rows.update({row[0]: dict(zip(cols, row)) for row in zip(*(table[c] for c in cols))})
    return rows


@needs_shared_data
def test_a_webvid_style_csv_through_column_mapping(tmp_path):
    videos = sorted((SHARED_DATA / "videos").glob("*.mp4"))[:3]
    with (tmp_path / "results_2M_val.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        for i, video in enumerate(videos):
            out.writerow([1000 + i, str(video), "PT00H00M10S", "stock", f"Aerial shot of a coast number {i}"])
    mapping = "manifest.columns={video: contentUrl, caption: name, id: videoid}"
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['video', 'caption'\]"):
        list(read_manifest(str(tmp_path / "results_2M_val.csv")))  # without the mapping: named, at once
    rows = _ingest(tmp_path, str(tmp_path / "results_2M_val.csv"), mapping)
    assert sorted(rows) == ["1000", "1001", "1002"]
    assert [rows[str(1000 + i)]["video"] for i in range(3)] == [str(v) for v in videos]
    assert rows["1001"]["caption"] == "Aerial shot of a coast number 1" and rows["1001"]["duration"] > 0


@needs_shared_data
def test_an_msrvtt_style_csv_with_a_video_pattern_and_base_uri(tmp_path):
    videos = tmp_path / "MSRVTT" / "videos" / "all"
    videos.mkdir(parents=True)
    for i, real in enumerate(sorted((SHARED_DATA / "videos").glob("*.mp4"))[:2]):
        shutil.copy(real, videos / f"video{7010 + i}.mp4")
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text(
        "key,vid_key,video_id,sentence\nret0,msr7010,video7010,a man is talking\n"
        "ret1,msr7011,video7011,people are dancing\n"
    )
    overrides = ["manifest.columns={video: video_id, caption: sentence, id: key}",
                 "manifest.video_pattern='{}.mp4'", f"manifest.base_uri={videos}"]  # fmt: skip
    rows = _ingest(tmp_path, str(tmp_path / "MSRVTT_JSFUSION_test.csv"), *overrides)
    assert rows["ret0"]["video"] == str(videos / "video7010.mp4") and rows["ret0"]["drop_reason"] is None
    assert rows["ret1"]["caption"] == "people are dancing" and rows["ret1"]["drop_reason"] is None


def test_column_mapping_keys_are_validated():
    with pytest.raises(ConfigError, match="manifest.columns"):
        load_config(CONFIGS / "demo.yaml", ["manifest.columns={vid: contentUrl}"])
    with pytest.raises(ConfigError, match="video_pattern"):
        load_config(CONFIGS / "demo.yaml", ["manifest.video_pattern=videos/x.mp4"])


def _pack(tar_path, names) -> None:
    with tarfile.open(tar_path, "w") as tar:
        for name in names:
            tar.add(V2D / name, arcname=name)


@needs_shared_data
def test_video2dataset_tars_are_read_in_place(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    members = sorted(p.name for p in V2D.iterdir())
    half = [m for m in members if m.split(".")[0] in (*REAL_CLIPS[:2], *STILLS[:1])]
    _pack(shards / "shard-000000.tar", half)
    _pack(shards / "shard-000001.tar", [m for m in members if m not in half])
    pattern = str(shards / "shard-{000000..000001}.tar")
    assert kind(pattern) == kind(str(shards)) == kind(str(shards / "shard-000000.tar")) == "webdataset"
    assert len(list(read_manifest(str(shards)))) == len(list(read_manifest(pattern))) == 6
    rows = _ingest(tmp_path, pattern)
    assert sorted(rows) == sorted((*REAL_CLIPS, *STILLS))  # the sample keys are the ids
    for key in REAL_CLIPS:  # probed through tar://, the caption from the sample's .txt
        row = rows[key]
        assert row["video"].startswith(f"tar://{key}.mp4::") and row["video"].endswith(".tar")
        assert row["drop_reason"] is None and row["duration"] > 1, row
        assert row["caption"] == (V2D / f"{key}.txt").read_text().strip()
    for key in STILLS:  # JPEG stills under a .mp4 name: a rejection with a reason, not a crash
        assert rows[key]["drop_reason"] in ("too_short", "unreadable_video"), rows[key]
    frames = _ingest(tmp_path / "kf", pattern, until="keyframes")  # key-frames decoded from inside the tar
    assert sorted(k for k, r in frames.items() if r["drop_reason"] is None) == sorted(REAL_CLIPS)
    unpacked = sorted(p.name for p in shards.iterdir())
    assert unpacked == ["shard-000000.tar", "shard-000001.tar"]  # nothing unpacked


@needs_shared_data
def test_a_sample_without_a_video_and_a_json_caption_key(tmp_path):
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        tar.add(V2D / "0000030_00005.mp4", arcname="a.mp4")
        tar.add(V2D / "0000030_00005.json", arcname="a.json")
        tar.add(V2D / "0000038_00003.txt", arcname="b.txt")  # a caption with no video
    rows = list(read_manifest(str(tmp_path / "s.tar"), ManifestConfig(caption_key="key")))
    assert rows[0]["clip_id"] == "a" and rows[0]["caption"] == "0000030_00005"  # the .json's "key"
    assert rows[1]["manifest_error"] == "bad_manifest_row"
    assert rows[1]["manifest_detail"] == "s.tar sample b: no video member (has .txt)"


@needs_shared_data
def test_a_folder_with_sidecars(tmp_path):
    corpus = tmp_path / "my videos"
    (corpus / "trip").mkdir(parents=True)
    real = sorted((SHARED_DATA / "videos").glob("*.mp4"))
    shutil.copy(real[0], corpus / "a.mp4")
    (corpus / "a.txt").write_text("a dog runs along the beach\n")
    shutil.copy(real[1], corpus / "trip" / "b.mp4")
    (corpus / "trip" / "b.json").write_text(json.dumps({"caption": "两个人在街上走", "tags": ["x"]}))
    shutil.copy(real[2], corpus / "trip" / "c.mp4")
    (corpus / "trip" / "c.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nhello there\n")
    shutil.copy(real[3], corpus / "d.mp4")  # no sidecar at all
    (corpus / "notes.txt").write_text("not a caption: no video of that name")
    assert kind(str(corpus)) == "folder"
    rows = {r["video"]: r for r in read_manifest(str(corpus))}
    assert sorted(rows) == [str(corpus / p) for p in ("a.mp4", "d.mp4", "trip/b.mp4", "trip/c.mp4")]
    assert rows[str(corpus / "a.mp4")]["caption"] == "a dog runs along the beach"
    assert rows[str(corpus / "trip/b.mp4")]["caption"] == "两个人在街上走"
    assert rows[str(corpus / "trip/c.mp4")]["subtitles"] == str(corpus / "trip/c.srt")
    assert rows[str(corpus / "d.mp4")]["caption"] == ""
    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved)
    assert {r["clip_id"] for r in read_manifest(str(moved))} == {r["clip_id"] for r in rows.values()}
    ingested = _ingest(tmp_path, str(corpus))
    by_video = {r["video"]: r for r in ingested.values()}
    assert by_video[str(corpus / "d.mp4")]["drop_reason"] == "empty_caption"  # said, not lost
    assert by_video[str(corpus / "a.mp4")]["drop_reason"] is None


@needs_shared_data
def test_the_fingerprint_covers_a_folders_listing(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    shutil.copy(sorted((SHARED_DATA / "videos").glob("*.mp4"))[0], corpus / "a.mp4")
    (corpus / "a.txt").write_text("a dog runs")
    before = manifest_digest(str(corpus))
    _ingest(tmp_path, str(corpus))
    (corpus / "a.txt").write_text("a cat sleeps")
    assert manifest_digest(str(corpus)) != before
    with pytest.raises(RunDirConflict, match="input contents"):
        _ingest(tmp_path, str(corpus))


@needs_shared_data
@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "csv"])
def test_vtcurate_manifest_writes_what_an_input_stands_for(tmp_path, suffix):
    from vtcurate.cli import main

    _pack(tmp_path / "s.tar", sorted(p.name for p in V2D.iterdir()))
    out = tmp_path / f"listing.{suffix}"
    assert main(["manifest", str(tmp_path / "s.tar"), "-o", str(out)]) == 0
    # read back, the written manifest gives the same rows, ids included
    assert list(read_manifest(str(out))) == list(read_manifest(str(tmp_path / "s.tar")))
