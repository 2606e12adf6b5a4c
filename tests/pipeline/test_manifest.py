import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vtcurate.pipeline.manifest import ManifestError, derived_id, read_manifest


def _write(tmp_path, fmt, rows):
    path = tmp_path / f"m.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_formats_and_columns(tmp_path, fmt):
    rows = [
        {"video": "a.mp4", "caption": "a dog", "id": "x1", "start": "1.5", "end": "3"},
        {"video": "/abs/b.mp4", "caption": "a cat", "id": "", "start": "", "end": ""},
        {"video": "c.mp4", "caption": "a cow", "id": "x1", "start": "", "end": ""},
    ]
    if fmt == "parquet":
        rows = [
            {
                **r,
                "start": float(r["start"]) if r["start"] else None,
                "end": float(r["end"]) if r["end"] else None,
            }
            for r in rows
        ]
    out = list(read_manifest(str(_write(tmp_path, fmt, rows))))
    assert [r["row"] for r in out] == [1, 2, 3]
    assert out[0]["video"] == str(tmp_path / "a.mp4")  # relative to the manifest
    assert out[1]["video"] == "/abs/b.mp4"
    assert (out[0]["start"], out[0]["end"]) == (1.5, 3.0)
    assert out[0]["clip_id"] == "x1"
    assert out[1]["clip_id"] == derived_id("/abs/b.mp4", None, None)
    assert out[2]["manifest_error"] == "duplicate_id" and "row 1" in out[2]["manifest_detail"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_missing_required_column_fails_before_work(tmp_path, fmt):
    path = _write(tmp_path, fmt, [{"video": "a.mp4", "text": "no caption column"}])
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['caption'\]"):
        list(read_manifest(str(path)))


def test_bad_rows_are_kept_with_a_reason(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"video": "a.mp4", "caption": "ok"}\n'
        "{not json\n"
        "[1, 2]\n"
        '{"video": "", "caption": "no video"}\n'
        '{"video": "b.mp4", "caption": "x", "start": "soon"}\n'
    )
    out = list(read_manifest(str(path)))
    assert [r["manifest_error"] for r in out] == [
        None,
        "bad_manifest_row",
        "bad_manifest_row",
        "bad_manifest_row",
        "bad_span",
    ]
    assert len({r["clip_id"] for r in out}) == 5


def test_odd_text_is_stored_not_fatal(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"video": "a.mp4", "caption": "lone \\ud800 surrogate", "id": "x\\udfff"}\n'
        '{"video": 7, "caption": 12345, "id": 3}\n'
    )
    rows = list(read_manifest(str(path)))
    table = pa.Table.from_pylist(rows)  # would raise on a lone surrogate
    assert table.column("caption").to_pylist() == ["lone ? surrogate", "12345"]
    assert rows[1]["manifest_error"] == "bad_manifest_row" and rows[1]["clip_id"] == "3"


def test_types_are_checked(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"video": "a.mp4", "caption": ["a", "list"]}\n'
        '{"video": "b.mp4", "caption": "ok", "id": {"a": 1}}\n'
        '{"video": "c.mp4", "caption": "ok", "start": true}\n'
        '{"video": "d.mp4", "caption": "ok", "id": 4, "start": 1, "end": "2.5"}\n'
    )
    rows = list(read_manifest(str(path)))
    assert [r["manifest_error"] for r in rows] == ["bad_manifest_row", "bad_manifest_row", "bad_span", None]
    assert "caption is a list" in rows[0]["manifest_detail"] and "id is a dict" in rows[1]["manifest_detail"]
    assert (rows[3]["clip_id"], rows[3]["start"], rows[3]["end"]) == ("4", 1.0, 2.5)


def test_csv_with_bom_and_huge_field(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffvideo,caption\na.mp4,".encode() + b"x" * 300_000 + b"\nb.mp4,\xff\xfe bad utf8\n")
    rows = list(read_manifest(str(path)))
    assert len(rows) == 2 and len(rows[0]["caption"]) == 300_000
    assert rows[1]["caption"] == "\ufffd\ufffd bad utf8" and rows[1]["manifest_error"] is None


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        list(read_manifest(str(tmp_path / "nope.jsonl")))
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match="unknown manifest format"):
        list(read_manifest(str(tmp_path / "m.txt")))


def test_fsspec_url(tmp_path):
    import fsspec

    with fsspec.open("memory://bucket/m.jsonl", "w") as fh:
        fh.write(json.dumps({"video": "v/a.mp4", "caption": "a dog"}) + "\n")
    (row,) = read_manifest("memory://bucket/m.jsonl")
    assert row["video"] == "memory://bucket/v/a.mp4"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_timed_text_columns(tmp_path, fmt):
    """`subtitles` resolves like `video`; `segments` is a list (a JSON string in CSV); a row with
    timed text needs no caption; malformed segments reject the row, naming the item."""
    segs = [{"start": 0, "end": 2.5, "text": "hello"}, {"start": "2.5", "end": 4, "text": "你好"}]
    rows = [
        {"video": "a.mp4", "caption": "", "subtitles": "subs/a.srt", "segments": ""},
        {"video": "b.mp4", "caption": "", "subtitles": "", "segments": json.dumps(segs)},
        {
            "video": "c.mp4",
            "caption": "",
            "subtitles": "",
            "segments": json.dumps([{"start": 3, "end": 1, "text": "x"}]),
        },
        {"video": "d.mp4", "caption": "", "subtitles": "", "segments": '[{"start": 0'},
    ]
    if fmt == "jsonl":
        rows[1]["segments"] = segs  # a real list in JSON
    got = list(read_manifest(str(_write(tmp_path, fmt, rows))))
    assert got[0]["subtitles"] == str(tmp_path / "subs" / "a.srt") and got[0]["segments"] is None
    assert got[1]["segments"] == [
        {"start": 0.0, "end": 2.5, "text": "hello"},
        {"start": 2.5, "end": 4.0, "text": "你好"},
    ]
    assert [g["manifest_error"] for g in got] == [None, None, "bad_manifest_row", "bad_manifest_row"]
    assert "item 0 has no valid start <= end" in got[2]["manifest_detail"]
    assert "not JSON" in got[3]["manifest_detail"]
    from vtcurate.pipeline.manifest import SCHEMA, partition

    table = next(partition(iter(got), 8))
    assert table.schema == SCHEMA and table.column("segments")[1].as_py()[1]["text"] == "你好"
