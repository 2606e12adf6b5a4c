"""A cache of generations, so a rerun or a resumed run never asks the model twice.

Entries are keyed by a digest of everything the output depends on (input text or image, model id,
prompt, sampling).  Each writer process appends to its own JSON-lines segment in the cache
directory and flushes after every batch, so a run killed mid-partition keeps what it generated,
and workers on several nodes never write the same file (the directory lives in the run directory,
shared storage on a cluster).  A torn last line from a kill is skipped on load.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


class GenerationCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._entries: dict[str, dict] | None = None
        self._segment: Path | None = None

    def _load(self) -> dict[str, dict]:
        if self._entries is None:
            self._entries = {}
            if self.directory and self.directory.is_dir():
                for seg in sorted(self.directory.glob("*.jsonl")):
                    with open(seg, encoding="utf-8") as fh:
                        for line in fh:
                            try:
                                entry = json.loads(line)
                                self._entries[entry["key"]] = entry["value"]
                            except (json.JSONDecodeError, KeyError, TypeError):
                                log.warning("generation cache: skipped a torn line in %s", seg.name)
        return self._entries

    def get(self, key: str) -> dict | None:
        return self._load().get(key)

    def put_many(self, items: dict[str, dict]) -> None:
        if not items:
            return
        self._load().update(items)
        if self.directory is None:
            return
        if self._segment is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._segment = self.directory / name
        with open(self._segment, "a", encoding="utf-8") as fh:
            for key, value in items.items():
                fh.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def __len__(self) -> int:
        return len(self._load())
