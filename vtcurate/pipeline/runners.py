"""Runners map a stage over partitions.  Stages never see which runner runs them.

- local: in-process, one partition after another (tests, debugging).
- ray:   Ray Data; partitions are rows of a dataset mapped by an actor pool, so each worker loads
         its models once in setup().  The pool is sized from the cluster's CPUs minus a reserve,
         because an actor pool that holds every CPU starves Ray Data's own tasks and hangs.  A
         partition whose worker raised or died is retried (`ray.max_task_retries`).
- beam:  Apache Beam (vtcurate.pipeline.beam_runner).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from vtcurate.config import PipelineConfig, RayConfig
from vtcurate.errors import UserError
from vtcurate.pipeline.partition import PartitionResult, PartitionTask, run_partition
from vtcurate.stages.base import Stage

log = logging.getLogger(__name__)


class LocalRunner:
    name = "local"

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def plan(self, stage: Stage, n_tasks: int) -> dict:
        res = stage.resources
        return {"workers": 1, "cpus_per_worker": None, "gpus_per_worker": None, "batch_size": res.batch_size}

    def map(self, stage: Stage, tasks: list[PartitionTask]) -> Iterator[PartitionResult]:
        stage.setup()
        try:
            for task in tasks:
                yield run_partition(stage, task)
        finally:
            stage.teardown()

    def describe(self) -> dict:
        return {"runner": "local"}


class _PartitionWorker:
    """Ray Data callable class: one per actor, the stage set up once."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        stage.setup()

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        import ray

        node = ray.get_runtime_context().get_node_id()
        results = []
        for spec in batch["task"]:
            result = run_partition(self.stage, PartitionTask(**json.loads(spec)))
            results.append(json.dumps(replace(result, node=node).as_dict()))
        return {"result": np.asarray(results, dtype=object)}


def pool_size(total_cpus: float, reserve: float, per_worker: float, cap: int | None) -> int:
    """Actors that fit beside the reserved CPUs (at least one)."""
    per_worker = per_worker or 1.0
    size = max(1, math.floor(max(total_cpus - reserve, per_worker) / per_worker))
    return min(size, cap) if cap else size


class RayRunner:
    name = "ray"

    def __init__(self, config: RayConfig, address: str | None = None) -> None:
        self.config = config
        self.address = address or config.address or os.environ.get("RAY_ADDRESS") or None
        self._started = False

    def __enter__(self) -> RayRunner:
        # Ray Data reads this when it is first imported; its per-dataset INFO lines drown the
        # pipeline's own progress
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
        import ray

        if not ray.is_initialized():
            kwargs = {"logging_level": logging.WARNING, "log_to_driver": False}
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.config.num_cpus, include_dashboard=False, **kwargs)
            self._started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the executor shows one progress bar per stage
        ctx.print_on_execution_start = False
        # a partition task that raised is retried like one whose actor died, up to max_task_retries
        # (a row that raises never gets here: it is rejected as stage_error inside the task)
        ctx.actor_task_retry_on_errors = True
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import ray

            ray.shutdown()

    def describe(self) -> dict:
        import ray

        return {
            "runner": "ray",
            "address": self.address or "embedded",
            "cluster_resources": ray.cluster_resources(),
            "nodes": len(ray.nodes()),
        }

    def plan(self, stage: Stage, n_tasks: int) -> dict:
        """The actor pool for a stage: sized from the cluster's CPUs, leaving the reserve free."""
        import ray

        res = stage.resources
        total = ray.cluster_resources().get("CPU", 1.0)
        size = pool_size(total, self.config.reserve_cpus, res.num_cpus, res.workers)
        if res.num_gpus:  # an actor pool larger than the GPUs allow would wait forever
            gpus = ray.cluster_resources().get("GPU", 0.0)
            if gpus < res.num_gpus:
                raise UserError(
                    f"{stage.name} needs {res.num_gpus:g} GPU per worker; the cluster has {gpus:g}"
                )
            size = min(size, math.floor(gpus / res.num_gpus))
        return {
            "workers": max(1, min(size, n_tasks)),
            "cpus_per_worker": res.num_cpus,
            "gpus_per_worker": res.num_gpus,
            "batch_size": res.batch_size,
        }

    def map(self, stage: Stage, tasks: list[PartitionTask]) -> Iterator[PartitionResult]:
        import ray

        if not tasks:
            return
        res = stage.resources
        size = self.plan(stage, len(tasks))["workers"]
        log.info("%s: %d partitions on %d actor(s) x %.2g CPU", stage.name, len(tasks), size, res.num_cpus)
        specs = [{"task": json.dumps(t.__dict__)} for t in tasks]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
            ds = ray.data.from_items(specs, override_num_blocks=len(specs)).map_batches(
                _PartitionWorker,
                fn_constructor_kwargs={"stage": stage},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=size),
                num_cpus=res.num_cpus,
                num_gpus=res.num_gpus or None,
                # an actor option: Ray 2.60 has no named parameter for it and warns
                max_task_retries=self.config.max_task_retries,
            )
        for row in ds.iter_rows():
            yield PartitionResult(**json.loads(row["result"]))


def make_runner(name: str, config: PipelineConfig, address: str | None, run_root: Path):
    if name == "local":
        return LocalRunner()
    if name == "ray":
        return RayRunner(config.ray, address)
    if name == "beam":
        from vtcurate.pipeline.beam_runner import BeamRunner

        return BeamRunner(config.beam, run_root / "_beam")
    raise ValueError(f"unknown runner {name!r} (local | ray | beam)")
