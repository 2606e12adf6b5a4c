import shutil
import wave

import pyarrow as pa
import pytest

from helpers import SHARED_DATA, needs_shared_data
from vtcurate.config import IngestConfig
from vtcurate.pipeline.manifest import SCHEMA
from vtcurate.stages.ingest import IngestStage

pytestmark = needs_shared_data


def _table(rows):
    full = []
    for i, r in enumerate(rows):
        row = dict.fromkeys(SCHEMA.names)
        row.update({"row": i + 1, "clip_id": f"c{i}", "caption": "a dog runs", **r})
        full.append(row)
    return pa.Table.from_pylist(full, schema=SCHEMA)


def test_rejections_have_stable_reasons(tmp_path):
    mp4 = str(SHARED_DATA / "videos" / "mmaction2__test.mp4")  # 10 s
    still = str(SHARED_DATA / "pairs" / "video2dataset_shard" / "000000014.mp4")  # a JPEG
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "dir.mp4").mkdir()
    with wave.open(str(tmp_path / "audio.mp4"), "wb") as w:  # audio only, under a video name
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 8000)
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes((SHARED_DATA / "videos" / "mmaction2__test.mp4").read_bytes()[:5000])
    cases = [
        ({"video": mp4}, None),
        ({"video": mp4, "start": 2.0, "end": 4.0}, None),
        ({"video": str(tmp_path / "missing.mp4")}, "missing_file"),
        ({"video": str(tmp_path / "text.mp4")}, "unreadable_video"),
        ({"video": str(tmp_path / "empty.mp4")}, "unreadable_video"),
        ({"video": str(tmp_path / "dir.mp4")}, "not_a_file"),
        ({"video": str(truncated)}, "unreadable_video"),
        ({"video": str(tmp_path / "audio.mp4")}, "no_video_stream"),
        ({"video": still}, "too_short"),
        ({"video": mp4, "start": 4.0, "end": 2.0}, "bad_span"),
        ({"video": mp4, "start": 12.0}, "bad_span"),
        ({"video": mp4, "end": 30.0}, "bad_span"),
        ({"video": mp4, "start": 1.0, "end": 1.2}, "too_short"),
        ({"video": mp4, "caption": "  "}, "empty_caption"),
        ({"video": mp4, "caption": "", "subtitles": "a.srt"}, None),  # split captions it from the cues
        ({"video": mp4, "caption": "", "segments": [{"start": 0.0, "end": 1.0, "text": "hi"}]}, None),
        ({"video": mp4, "manifest_error": "duplicate_id", "manifest_detail": "x"}, "duplicate_id"),
    ]
    stage = IngestStage(IngestConfig(min_duration=0.5, max_duration=600))
    out = stage(_table([c for c, _ in cases])).to_pylist()
    assert [o["drop_reason"] for o in out] == [reason for _, reason in cases]
    assert all(o["drop_detail"] for o in out if o["drop_reason"])
    assert out[0]["duration"] == pytest.approx(10.0, abs=0.05)
    assert (out[0]["width"], out[0]["height"], out[0]["codec"]) == (340, 256, "h264")
    assert out[0]["num_frames"] == 300
    assert (out[1]["span_start"], out[1]["span_end"]) == (2.0, 4.0)


def test_too_long_and_fallback_probe(tmp_path):
    mp4 = str(SHARED_DATA / "videos" / "mmaction2__test.mp4")
    stage = IngestStage(IngestConfig(max_duration=5, probe_backends=["pyav"]))
    (out,) = stage(_table([{"video": mp4}])).to_pylist()
    assert out["drop_reason"] == "too_long" and out["probe_backend"] == "pyav"


def test_every_real_video_probes(tmp_path):
    videos = sorted((SHARED_DATA / "videos").iterdir())
    out = IngestStage(IngestConfig())(_table([{"video": str(v)} for v in videos])).to_pylist()
    assert [o["drop_reason"] for o in out] == [None] * len(videos)
    assert all(o["fps"] > 0 and o["num_frames"] > 0 for o in out)


def test_remote_url_through_fsspec(tmp_path):
    import fsspec

    src = SHARED_DATA / "videos" / "imageio__realshort.mp4"
    with fsspec.open("memory://videos/short.mp4", "wb") as fh:
        fh.write(src.read_bytes())
    shutil.copy(src, tmp_path / "short.mp4")
    out = IngestStage(IngestConfig())(
        _table([{"video": "memory://videos/short.mp4"}, {"video": "memory://videos/none.mp4"}])
    ).to_pylist()
    assert out[0]["drop_reason"] is None and out[0]["num_frames"] == 36
    assert out[1]["drop_reason"] == "missing_file"
