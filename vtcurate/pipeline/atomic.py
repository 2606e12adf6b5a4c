"""Atomic writes: write to a temporary sibling, then rename, so a partial file never looks finished."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def write_json(data: Any, path: Path) -> None:
    write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", path)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_bytes(b"")
    os.replace(tmp, path)


def save_torch(obj: Any, path: Path) -> None:
    """torch.save, atomically (a checkpoint cut short by a crash is never the latest one)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)
