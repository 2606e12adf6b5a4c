"""The driver streams: reading the manifest, the stages' partitions and writing the tars never
holds the whole run, so the memory it holds at once does not grow with the rows.

Measured with exact counters rather than RSS (a process's peak RSS is set by its imports and model
loads long before the rows matter): the peak of pyarrow's memory pool and tracemalloc's peak of
Python allocations (numpy's included), each above what the process held when the run started.
One process runs the large manifest once to warm up (imports, caches, and the interpreter's table
of interned strings, whose one-off resize of a few MB would otherwise land in whichever run crosses
its threshold), then measures a small and a large run.  The local runner processes the partitions
in the driver too, one at a time, so that is bounded as well.
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
config = load_config(sys.argv[1], overrides)
base, peaks = pa.default_memory_pool(), {}
for name, manifest in (("warm-up", sys.argv[3]), ("small", sys.argv[2]), ("large", sys.argv[3])):
    pool = pa.proxy_memory_pool(base)  # a pool of this run's own: its peak is this run's
    pa.set_memory_pool(pool)
    python0 = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    run_pipeline(config, manifest, sys.argv[4] + "/" + name, runner="local")
    peaks[name] = {"arrow": pool.max_memory(), "python": tracemalloc.get_traced_memory()[1] - python0}
print(json.dumps(peaks))
"""
# A kept row's 8 JPEG key-frames alone take ~16 KB: holding every row would add far more per row.
MAX_BYTES_PER_ROW = 1024


def test_driver_memory_does_not_grow_with_the_rows(tmp_path):
    small, large = build_manifest(tmp_path / "clips", 100), build_manifest(tmp_path / "clips", 1000)
    cmd = [sys.executable, "-c", PROBE, str(CONFIGS / "demo.yaml"), str(small), str(large), str(tmp_path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    peaks = json.loads(out.strip().splitlines()[-1])
    small, large = peaks["small"], peaks["large"]
    budget = MAX_BYTES_PER_ROW * (1000 - 100)
    assert large["arrow"] - small["arrow"] < budget, peaks
    assert large["python"] - small["python"] < budget, peaks
