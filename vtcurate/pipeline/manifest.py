"""Read a manifest (jsonl, csv or parquet; local path or fsspec URL), a folder of videos or
WebDataset tars (`vtcurate.pipeline.inputs`) into row partitions.

Columns: `video` and `caption` (required), `id`, `start`, `end`, `lang_hint` (optional), and a
video's timed text (optional, for the split stage): `subtitles`, the path or URL of an SRT/VTT file
(relative: to the manifest), and `segments`, a list of `{start, end, text}` in seconds (ASR; a JSON
string in a CSV cell).  A row with timed text may leave `caption` empty.  A missing required
column fails before any work.  A row that cannot be parsed is not dropped: it
becomes a row with `manifest_error` set, which `ingest` rejects with that reason.  Duplicate clip
ids are marked here, where the whole manifest streams past once.

A manifest with its own column names is read through `manifest.columns` (vtcurate's name -> the
file's), its video column through `manifest.video_pattern`, relative paths from `manifest.base_uri`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from vtcurate.config import ManifestConfig
from vtcurate.errors import UserError
from vtcurate.pipeline import inputs

REQUIRED = ("video", "caption")
CSV_FIELD_LIMIT = 64 * 1024 * 1024

SEGMENT = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("clip_id", pa.string()),
        ("video", pa.string()),
        ("caption", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("lang_hint", pa.string()),
        ("subtitles", pa.string()),
        ("segments", pa.list_(SEGMENT)),
        ("manifest_error", pa.string()),
        ("manifest_detail", pa.string()),
    ]
)


class ManifestError(UserError, ValueError):
    """The manifest as a whole cannot be read (missing column, unknown format)."""


def _format(path: str) -> str:
    name = path.lower().split("?")[0]
    for suffix, fmt in ((".jsonl", "jsonl"), (".json", "json"), (".csv", "csv"), (".parquet", "parquet")):
        if name.endswith((suffix, suffix + ".gz")):
            return fmt
    raise ManifestError(f"{path}: unknown manifest format (expected .jsonl, .json, .csv or .parquet)")


def _check_columns(columns: list[str] | set[str], path: str, cfg: ManifestConfig) -> None:
    missing = [cfg.columns.get(c, c) for c in REQUIRED if cfg.columns.get(c, c) not in columns]
    if missing:
        mapped = " (manifest.columns maps vtcurate's names to the file's)" if cfg.columns else ""
        raise ManifestError(f"{path}: manifest is missing required column(s) {missing}{mapped}")


def _mapped(raw: dict[str, Any], cfg: ManifestConfig) -> dict[str, Any]:
    """The row under vtcurate's column names: a mapped column replaces any column of that name."""
    if not cfg.columns and cfg.video_pattern == "{}":
        return raw
    row = {k: v for k, v in raw.items() if k not in cfg.columns}
    for ours, theirs in cfg.columns.items():
        row[ours] = raw.get(theirs)
    video = row.get("video")
    if isinstance(video, (str, int)) and not isinstance(video, bool) and str(video).strip():
        row["video"] = cfg.video_pattern.format(str(video).strip())
    return row


def _raw_rows(path: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    """Yield dict rows under vtcurate's column names, or (error_code, detail) for rows that cannot
    be parsed."""
    for row in _file_rows(path, cfg):
        yield row if isinstance(row, tuple) else _mapped(row, cfg)


def _file_rows(path: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    import fsspec

    fmt = _format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with fsspec.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            _check_columns(pf.schema_arrow.names, path, cfg)
            for batch in pf.iter_batches(batch_size=4096):
                yield from batch.to_pylist()
        return
    with fsspec.open(path, "rb", compression="infer") as fh:
        # invalid UTF-8 is replaced, not fatal: the caption then carries U+FFFD; utf-8-sig drops
        # the byte-order mark spreadsheet programs write
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="replace", newline="")
        if fmt == "csv":
            csv.field_size_limit(CSV_FIELD_LIMIT)  # long captions are langid's to reject
            reader = csv.DictReader(text)
            _check_columns(reader.fieldnames or [], path, cfg)
            for row in reader:
                if None in row:  # more cells than header columns
                    yield ("bad_manifest_row", f"{len(row[None])} cells beyond the header")
                else:
                    yield row
            return
        if fmt == "json":
            yield from _json_array(text.read(), path, cfg)
            return
        yield from _jsonl(text, path, cfg)


def _not_object(value: Any) -> tuple[str, str]:
    return ("bad_manifest_row", f"expected a JSON object, got {type(value).__name__}")


def _json_array(body: str, path: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    try:
        records = json.loads(body)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not a JSON array ({err}); use .jsonl for one object per line") from None
    if not isinstance(records, list):
        raise ManifestError(f"{path}: expected a JSON array of objects, got {type(records).__name__}")
    yield from _checked((r if isinstance(r, dict) else _not_object(r) for r in records), path, cfg)


def _jsonl(lines, path: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    def parsed():
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield ("bad_manifest_row", f"invalid JSON: {err}")
                continue
            yield row if isinstance(row, dict) else _not_object(row)

    yield from _checked(parsed(), path, cfg)


def _checked(rows, path: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    """JSON has no header: a row lacking a key has it null, and a required key that no row has
    fails the manifest once all rows are read (still before any stage runs)."""
    seen: set[str] = set()
    for row in rows:
        if isinstance(row, dict):
            seen.update(row)
        yield row
    _check_columns(seen, path, cfg)


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a number: {value!r}")
    out = float(value)
    if math.isnan(out) or math.isinf(out):
        raise ValueError(f"not a finite number: {value!r}")
    return out


def _resolve(video: str, base: str) -> str:
    if "://" in video or posixpath.isabs(video) or not base:
        return video
    return posixpath.join(base, video)


def derived_id(video: str, start: float | None, end: float | None) -> str:
    """Stable id: the video as the manifest writes it (so moving a corpus keeps its ids) and the
    span with start defaulting to 0 (so `start: 0` and no start are the same clip)."""
    return hashlib.sha1(f"{video}|{start or 0.0}|{end}".encode()).hexdigest()[:16]


def _text(value: Any) -> str:
    """Any cell as valid UTF-8 text: JSON can carry lone surrogates that Arrow cannot store."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _segments(value: Any) -> list[dict] | None:
    """Timed text as given in a row: a list of {start, end, text}, or that list as a JSON string."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"not JSON: {err}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{start, end, text}}, got {type(value).__name__}")
    out = []
    for i, seg in enumerate(value):
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
            raise ValueError(f"item {i} is not an object with a text")
        start, end = _float(seg.get("start")), _float(seg.get("end"))
        if start is None or end is None or end < start or start < 0:
            raise ValueError(f"item {i} has no valid start <= end")
        out.append({"start": start, "end": end, "text": _text(seg["text"])})
    return out


def _normalise(raw: dict[str, Any], base: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SCHEMA.names)
    video, caption, given = raw.get("video"), raw.get("caption"), raw.get("id")
    problems = []
    if not isinstance(video, str) or not video.strip():
        problems.append("no video path" if video in (None, "") else f"video is a {type(video).__name__}")
    if caption is not None and not isinstance(caption, str):
        problems.append(f"caption is a {type(caption).__name__}, not text")
    if given is not None and (isinstance(given, bool) or not isinstance(given, (str, int))):
        problems.append(f"id is a {type(given).__name__}")
    if problems:
        row.update(manifest_error="bad_manifest_row", manifest_detail="; ".join(problems))
    video = "" if video is None else _text(video).strip()
    row["video"] = _resolve(video, base) if video else video
    row["caption"] = "" if caption is None else _text(caption)
    hint = raw.get("lang_hint")
    row["lang_hint"] = None if hint in (None, "") else _text(hint)
    try:
        row["start"], row["end"] = _float(raw.get("start")), _float(raw.get("end"))
    except (TypeError, ValueError) as err:
        if not row["manifest_error"]:
            row.update(manifest_error="bad_span", manifest_detail=f"start/end: {err}")
    subtitles = raw.get("subtitles")
    if subtitles not in (None, ""):
        if isinstance(subtitles, str):
            row["subtitles"] = _resolve(_text(subtitles).strip(), base)
        elif not row["manifest_error"]:
            row.update(manifest_error="bad_manifest_row", manifest_detail="subtitles is not a path")
    try:
        row["segments"] = _segments(raw.get("segments"))
    except ValueError as err:
        if not row["manifest_error"]:
            row.update(manifest_error="bad_manifest_row", manifest_detail=f"segments: {err}")
    row["clip_id"] = _text(given) if given not in (None, "") else derived_id(video, row["start"], row["end"])
    return row


def resolve_input(path: str) -> str:
    """Local paths absolute (a resumed run must find the same file from any directory)."""
    return path if "://" in path else str(Path(path).resolve())


def manifest_digest(path: str, cfg: ManifestConfig | None = None) -> str:
    """sha256 of what the input holds: a manifest's bytes, or the listing a folder or WebDataset
    tars stand for (`listing`).  A resumed run must read the same input, not just the same name."""
    import fsspec

    cfg = cfg or ManifestConfig()
    if inputs.kind(path) != "manifest":
        digest = hashlib.sha256()
        for row in listing(path, cfg):
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
        return digest.hexdigest()
    fs, fpath = fsspec.core.url_to_fs(path)
    if not fs.isfile(fpath):
        raise ManifestError(f"manifest not found: {path}")
    with fs.open(fpath, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def listing(path: str, cfg: ManifestConfig) -> Iterator[dict[str, Any] | tuple[str, str]]:
    """The raw rows `path` stands for, under vtcurate's column names."""
    import fsspec

    found = inputs.kind(path)
    if found == "folder":
        return inputs.folder_rows(path, cfg)
    if found == "webdataset":
        return inputs.webdataset_rows(path, cfg)
    fs, fpath = fsspec.core.url_to_fs(path)
    if not fs.isfile(fpath):
        raise ManifestError(f"manifest not found: {path}")
    return _raw_rows(path, cfg)


def _base(path: str, cfg: ManifestConfig) -> str:
    """Where relative paths start: base_uri, a folder input itself, or the manifest's folder."""
    if cfg.base_uri:
        return cfg.base_uri if "://" in cfg.base_uri else str(Path(cfg.base_uri).resolve())
    if inputs.kind(path) == "folder":
        return path.rstrip("/") if "://" in path else str(Path(path).resolve())
    return posixpath.dirname(path) if "://" in path else str(Path(path).resolve().parent)


def read_manifest(path: str, cfg: ManifestConfig | None = None) -> Iterator[dict[str, Any]]:
    """Every input row, normalised to SCHEMA, duplicates and parse errors marked."""
    cfg = cfg or ManifestConfig()
    rows, base = listing(path, cfg), _base(path, cfg)
    seen: dict[str, int] = {}
    for n, raw in enumerate(rows, start=1):
        if isinstance(raw, tuple):
            row = dict.fromkeys(SCHEMA.names)
            row.update(
                clip_id=f"manifest-row-{n}",
                video="",
                caption="",
                manifest_error=raw[0],
                manifest_detail=raw[1],
            )
        else:
            row = _normalise(raw, base)
        row["row"] = n
        if not row["manifest_error"]:  # a row rejected anyway does not claim its id
            first = seen.setdefault(row["clip_id"], n)
            if first != n:
                row.update(manifest_error="duplicate_id", manifest_detail=f"id first seen at row {first}")
        yield row


def partition(rows: Iterator[dict[str, Any]], size: int) -> Iterator[pa.Table]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield pa.Table.from_pylist(chunk, schema=SCHEMA)
            chunk = []
    if chunk:
        yield pa.Table.from_pylist(chunk, schema=SCHEMA)


MANIFEST_FIELDS = ("id", "video", "caption", "start", "end", "lang_hint", "subtitles", "segments")


def write_manifest(source: str, out: str, cfg: ManifestConfig | None = None) -> int:
    """Write the manifest `source` stands for (a folder, tars, or a manifest with its own column
    names) to `out` (.parquet, .jsonl or .csv): paths resolved, ids written out, so that reading
    it gives the same rows, ids included.  Rows that could not be listed keep their id and caption
    with an empty video (read back, they are `bad_manifest_row` again).  Returns the row count."""
    import fsspec
    import pyarrow.parquet as pq

    rows = [{"id" if k == "clip_id" else k: row[k if k != "id" else "clip_id"] for k in MANIFEST_FIELDS}
            for row in read_manifest(source, cfg)]  # fmt: skip
    fmt = _format(out)
    with fsspec.open(out, "wb") as fh:
        if fmt == "parquet":
            schema = pa.schema([SCHEMA.field("clip_id").with_name("id"),
                                *(SCHEMA.field(k) for k in MANIFEST_FIELDS[1:])])  # fmt: skip
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), fh)
        elif fmt == "csv":
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            writer = csv.DictWriter(text, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "segments": json.dumps(row["segments"]) if row["segments"] else ""})
            text.flush()
            text.detach()
        else:
            fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    return len(rows)
