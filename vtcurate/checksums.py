"""sha256 of files (model weights, shards), streamed, computed once per process per file version."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        with path.open("rb") as fh:
            _CACHE[key] = hashlib.file_digest(fh, "sha256").hexdigest()
    return _CACHE[key]
