"""Files of a run: atomic writes, and reading stage outputs back.

Stages, runners, the report and the trainer share these; nothing here knows of runners or stages.
Writes go to a temporary sibling and are renamed into place, so a partial file never looks
finished.  Key-frame bytes are stored once, in the keyframes stage's kept partitions; every later
stage writes its rows without them, and `attach_frames` joins them back by clip id.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FRAMES = "frames"  # the key-frame JPEGs column: written by the stage that makes it, and only there


def _tmp(path: Path) -> str:
    # a plain string: pathlib interns every name it parses, and a unique temporary name per write
    # would grow the interpreter's interned-string table with the number of files a run writes
    return os.path.join(path.parent, f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_json(data: Any, path: Path) -> None:
    write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", path)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    open(tmp, "wb").close()
    os.replace(tmp, path)


def save_torch(obj: Any, path: Path) -> None:
    """torch.save, atomically (a checkpoint cut short by a crash is never the latest one)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def row_count(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def read_columns(paths: list[Path], columns: list[str]) -> dict[str, list]:
    """Columns of stage outputs as lists; a column a partition lacks reads as nulls."""
    out: dict[str, list] = {c: [] for c in columns}
    for path in paths:
        names = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in columns if c in names])
        for c in columns:
            out[c].extend(table.column(c).to_pylist() if c in names else [None] * table.num_rows)
    return out


def read_rows(paths: list[Path], columns: list[str] | None = None, limit: int | None = None,
              frames: Path | None = None) -> list[dict]:  # fmt: skip
    """Rows of stage outputs as dicts (all columns by default), stopping after `limit` rows.
    `frames`: the key-frame store's directory; each partition's rows get their frames from it."""
    out: list[dict] = []
    for path in paths:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in columns if c in names] if columns else None)
        if frames is not None and limit is not None:
            table = table.slice(0, limit - len(out))
        if frames is not None:
            table = attach_frames(table, frames / path.name)
        out.extend(table.to_pylist())
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def attach_frames(table: pa.Table, store: Path) -> pa.Table:
    """`table` with its rows' key-frames from `store` (the keyframes stage's kept partition of the
    same name), joined by clip id; rows without stored frames get null.  A table that already
    has frames, or a missing store (no keyframes stage ran), is returned as it is."""
    if FRAMES in table.column_names or not store.exists():
        return table
    stored = pq.read_table(store, columns=["clip_id", FRAMES])
    where = {cid: i for i, cid in enumerate(stored.column("clip_id").to_pylist())}
    idx = pa.array([where.get(cid) for cid in table.column("clip_id").to_pylist()], pa.int64())
    return table.append_column(FRAMES, stored.column(FRAMES).take(idx))


def without_frames(table: pa.Table) -> pa.Table:
    return table.drop_columns([FRAMES]) if FRAMES in table.column_names else table


def table_to_bytes(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes: how a partition travels between workers in memory."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def table_from_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
