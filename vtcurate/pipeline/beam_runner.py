"""The Apache Beam runner: each stage's partitions are mapped by a `ParDo` whose `DoFn.setup()`
sets the stage up (loads its models) once per worker.

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
from vtcurate.pipeline.partition import PartitionResult, PartitionTask, run_partition
from vtcurate.stages.base import Stage

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


class PartitionDoFn(beam.DoFn):
    """Runs partitions; the stage is set up once per DoFn instance (worker), not per bundle."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def setup(self) -> None:
        self.stage.setup()

    def process(self, spec: str):
        yield json.dumps(run_partition(self.stage, PartitionTask(**json.loads(spec))).as_dict())

    def teardown(self) -> None:
        self.stage.teardown()


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

    def plan(self, stage: Stage, n_tasks: int) -> dict:
        workers = self.config.options.get("direct_num_workers")
        return {"workers": workers, "cpus_per_worker": None, "gpus_per_worker": None,
                "batch_size": stage.resources.batch_size}  # fmt: skip

    def map(self, stage: Stage, tasks: list[PartitionTask]) -> Iterator[PartitionResult]:
        if not tasks:
            return
        out = self.scratch / f"{stage.name}-{uuid.uuid4().hex[:8]}"
        specs = [json.dumps(t.__dict__) for t in tasks]
        log.info("%s: %d partitions on Beam (%s)", stage.name, len(tasks), self.config.options.get("runner"))
        with beam.Pipeline(options=PipelineOptions(option_args(self.config.options))) as p:
            (
                p
                | "partitions" >> beam.Create(specs)
                | "spread" >> beam.Reshuffle()  # no fusion with Create: partitions go to every worker
                | stage.name >> beam.ParDo(PartitionDoFn(stage))
                | "results" >> beam.io.WriteToText(str(out / "result"))
            )
        try:
            for path in sorted(out.glob("result*")):
                for line in path.read_text("utf-8").splitlines():
                    yield PartitionResult(**json.loads(line))
        finally:
            shutil.rmtree(out, ignore_errors=True)
