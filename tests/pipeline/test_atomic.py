"""Writers killed in the middle of a file leave nothing that looks finished.

Each case runs the real writer in a subprocess whose low-level write is made to stop half-way
through the file and say so on stdout; the test then SIGKILLs it (a kill point the test controls,
not a race with the clock) and checks what a reader, a resumed run and the shard index see.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

HALF = "HALF-WRITTEN"

# What each script calls once its writer is half-way through the file: say so, wait to be killed.
PRELUDE = f"""
import time
def stall():
    print({HALF!r}, flush=True)
    time.sleep(3600)
"""


def _run_until_half(script: str, cwd: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + script], cwd=cwd, stdout=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stdout:  # blocks until the writer is mid-file (or the script ends)
            if line.strip() == HALF:
                break
        else:
            pytest.fail("the writer finished or died before it was stopped mid-file")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()


def test_a_parquet_partition_killed_mid_file(tmp_path):
    """Half a parquet file (no footer) is left under a temporary name only: the partition is
    not done, and readers of the stage's partitions never open it."""
    script = """
import io
from pathlib import Path
import pyarrow as pa
import pyarrow.parquet as pq
from vtcurate.storage import write_parquet
original = pq.write_table
def half(table, where, **kw):  # the first half of the bytes of the real file, then stop
    buf = io.BytesIO()
    original(table, buf, **kw)
    with open(where, "wb") as fh:
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        fh.flush()
        stall()
pq.write_table = half
table = pa.table({"clip_id": [f"c{i}" for i in range(50_000)], "caption": ["a cat"] * 50_000})
write_parquet(table, Path("kept/part-00000.parquet"))
"""
    _run_until_half(script, tmp_path)
    kept = tmp_path / "kept"
    assert not (kept / "part-00000.parquet").exists()  # the done marker of the partition
    assert sorted(kept.glob("part-*.parquet")) == []  # what stage readers list
    [tmp] = list(kept.iterdir())
    assert tmp.name.startswith(".part-00000.parquet.tmp-") and tmp.stat().st_size > 0
    with pytest.raises(Exception):  # noqa: B017 - any parquet error: it is truly half a file
        pq.read_table(tmp)


def test_json_killed_mid_file(tmp_path):
    """run.json / stats.json / index.json: the previous complete file stays as it was."""
    (tmp_path / "stats.json").write_text(json.dumps({"old": True}))
    script = """
from pathlib import Path
import vtcurate.storage as storage
class Stalling:  # the file object write_text writes through: half of the text, then stop
    def __init__(self, fh):
        self.fh = fh
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.fh.close()
    def write(self, text):
        self.fh.write(text[: len(text) // 2])
        self.fh.flush()
        stall()
storage.open = lambda *a, **k: Stalling(open(*a, **k))
storage.write_json({"new": list(range(100_000))}, Path("stats.json"))
"""
    _run_until_half(script, tmp_path)
    assert json.loads((tmp_path / "stats.json").read_text()) == {"old": True}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "stats.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".stats.json.tmp-")


def test_a_tar_killed_mid_shard_is_never_listed_and_is_cleaned_up(tmp_path):
    """The shard stage writes each tar in a temporary folder: a writer killed after its first
    sample leaves no tar under shards/<split>/, and finalize() removes the temporary folder."""
    script = """
from pathlib import Path
import pyarrow as pa
import webdataset as wds
from vtcurate.config import ShardConfig
from vtcurate.stages.shard import ShardStage
original = wds.ShardWriter.write
def write(self, sample):  # two samples into the tar, then stop
    original(self, sample)
    if self.count >= 2:
        self.tarstream.stream.flush()
        stall()
wds.ShardWriter.write = write
stage = ShardStage(ShardConfig(val_fraction=0.0))
stage.run_root = Path(".")
n = 5
kept = pa.table({"clip_id": [f"c{i}" for i in range(n)], "sample_key": [f"k{i}" for i in range(n)],
                 "split": ["train"] * n, "lang": ["en"] * n, "caption": ["a cat"] * n,
                 "frames": [[b"\\xff\\xd8" + bytes(20_000)] * 8] * n})
stage.write_partition(kept, "part-00000")
"""
    _run_until_half(script, tmp_path)
    shards = tmp_path / "shards"
    assert list(shards.glob("*/*.tar")) == []  # nothing that looks like a finished shard
    [tmp] = list((shards / "train").iterdir())
    assert tmp.name.startswith(".tmp-part-00000-en-") and any(tmp.iterdir())
    from vtcurate.config import ShardConfig
    from vtcurate.stages.shard import ShardStage

    stage = ShardStage(ShardConfig())
    stage.run_root = tmp_path
    stats = stage.finalize([])  # the partition never reported its tars
    assert stats["shards"]["samples"] == 0 and list((shards / "train").iterdir()) == []
    assert json.loads((shards / "index.json").read_text())["shards"] == []
