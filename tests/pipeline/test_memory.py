"""The driver streams: reading the manifest, the stages' partitions and writing the tars never
holds the whole run, so the memory it holds at once does not grow with the rows.

Measured in a fresh process per size with exact counters rather than RSS (a process's peak RSS is
set by its imports and model loads long before the rows matter): the peak of pyarrow's memory pool
and tracemalloc's peak of Python allocations (numpy's included).  The local runner processes the
partitions in the driver too, one at a time, so that is bounded as well.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.memory import build_manifest
from helpers import CONFIGS

PROBE = """
import json, sys, tracemalloc
tracemalloc.start()
import pyarrow as pa
from vtcurate.config import load_config
from vtcurate.pipeline.executor import run_pipeline
overrides = ["stages=[ingest, keyframes, shard]", "partition_rows=50", "report.enabled=false"]
run_pipeline(load_config(sys.argv[1], overrides), sys.argv[2], sys.argv[3], runner="local")
peaks = {"arrow": pa.default_memory_pool().max_memory(), "python": tracemalloc.get_traced_memory()[1]}
print(json.dumps(peaks))
"""
# A kept row's 8 JPEG key-frames alone take ~16 KB: holding every row would add far more per row.
MAX_BYTES_PER_ROW = 1024


def _peaks(tmp_path, rows: int) -> dict:
    manifest = build_manifest(tmp_path / "clips", rows)
    cmd = [
        sys.executable,
        "-c",
        PROBE,
        str(CONFIGS / "demo.yaml"),
        str(manifest),
        str(tmp_path / f"run-{rows}"),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_driver_memory_does_not_grow_with_the_rows(tmp_path):
    small, large = _peaks(tmp_path, 100), _peaks(tmp_path, 1000)
    budget = MAX_BYTES_PER_ROW * (1000 - 100)
    assert large["arrow"] - small["arrow"] < budget, (small, large)
    assert large["python"] - small["python"] < budget, (small, large)
