"""The Apache Beam runner: a segment's ops are chained `ParDo`s (fused by the runner), each
`DoFn.setup()` setting its stage up (loading its models) once per worker.  A partition travels
between them as Arrow IPC bytes; a run-wide plan is a barrier between two pipelines, as on Ray.

Pipeline options pass through from the config (`beam.options`): DirectRunner by default, any
Beam runner beyond it (Flink, Spark, Dataflow) with that runner's own options.  Workers write
the partitions' outputs to the run directory themselves, as on Ray, so it must be storage every
worker sees; the small per-partition results come back through a text sink in RUN_DIR/_beam.
This module imports Beam: `make_runner` imports it only for `--runner beam`.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from vtcurate.config import BeamConfig
from vtcurate.pipeline.partition import Op, PartitionResult
from vtcurate.storage import table_from_bytes, table_to_bytes

log = logging.getLogger(__name__)


def option_args(options: dict[str, Any]) -> list[str]:
    """Beam's command-line form of `options`: --key=value, a list as the key repeated, true as a flag."""
    args = []
    for key, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                args.append(f"--{key}")
            elif item is not False and item is not None:
                args.append(f"--{key}={item}")
    return args


class OpDoFn(beam.DoFn):
    """Runs one op over partitions; its stage is set up once per DoFn instance (worker), not per
    bundle.  Elements are (partition, its kept rows as IPC bytes or b"", results so far)."""

    def __init__(self, op: Op, last: bool) -> None:
        self.op, self.last = op, last

    def setup(self) -> None:
        self.op.setup()

    def process(self, element):
        part, payload, earlier = element
        table, result = self.op.process(part, table_from_bytes(payload) if payload else None)
        passed = table_to_bytes(table) if table is not None and not self.last else b""
        yield part, passed, [*earlier, result.as_dict()]

    def teardown(self) -> None:
        self.op.teardown()


class BeamRunner:
    name = "beam"

    def __init__(self, config: BeamConfig, scratch: Path) -> None:
        self.config = config
        self.scratch = scratch

    def __enter__(self) -> BeamRunner:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def describe(self) -> dict:
        return {"runner": "beam", "options": self.config.options}

    def pools(self, ops: list[Op], n_parts: int) -> list[dict]:
        workers = self.config.options.get("direct_num_workers")
        return [{"workers": workers, "cpus_per_worker": None, "gpus_per_worker": None,
                 "batch_size": op.resources.batch_size} for op in ops]  # fmt: skip

    def run_segment(self, ops: list[Op], parts: list[str]) -> Iterator[list[PartitionResult]]:
        if not parts:
            return
        out = self.scratch / f"segment-{uuid.uuid4().hex[:8]}"
        log.info("%d partitions through %s on Beam (%s)", len(parts), ", ".join(op.label for op in ops),
                 self.config.options.get("runner"))  # fmt: skip
        with beam.Pipeline(options=PipelineOptions(option_args(self.config.options))) as p:
            pcoll = (
                p
                | "partitions" >> beam.Create([(part, b"", []) for part in parts])
                | "spread" >> beam.Reshuffle()  # no fusion with Create: partitions go to every worker
            )
            for i, op in enumerate(ops):
                pcoll = pcoll | f"{op.stage.name}-{op.mode}" >> beam.ParDo(OpDoFn(op, i == len(ops) - 1))
            _ = (
                pcoll
                | "results" >> beam.Map(lambda element: json.dumps(element[2]))
                | "write" >> beam.io.WriteToText(str(out / "result"))
            )
        try:
            for path in sorted(out.glob("result*")):
                for line in path.read_text("utf-8").splitlines():
                    yield [PartitionResult(**r) for r in json.loads(line)]
        finally:
            shutil.rmtree(out, ignore_errors=True)
