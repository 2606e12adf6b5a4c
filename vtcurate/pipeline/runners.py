"""Runners map a segment of ops (consecutive stages between barriers) over partitions.  Stages
never see which runner runs them; every runner calls the same `Op.process` per partition.

- local: in-process, each partition through the whole segment in turn (tests, debugging).
- ray:   one Ray Data streaming pipeline per segment: a `map_batches` operator per op (or group
         of fused ops), each with its own actor pool (started full, may shrink when idle) and
         resources, so later stages work on partitions while earlier ones still decode others,
         and Ray Data's backpressure bounds what is in flight.
         A partition travels between operators as Arrow IPC bytes in the object store; the driver
         only sees each partition's small results.  A partition whose worker raised or died is
         retried (`ray.max_task_retries`).
- beam:  Apache Beam, the segment as chained ParDos (vtcurate.pipeline.beam_runner).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator

import pyarrow as pa

from vtcurate.config import PipelineConfig, RayConfig
from vtcurate.errors import UserError
from vtcurate.pipeline.partition import Op, PartitionResult
from vtcurate.stages.base import Resources
from vtcurate.storage import table_from_bytes, table_to_bytes

log = logging.getLogger(__name__)


def run_chain(ops: list[Op], part: str, table: pa.Table | None = None, node: str | None = None,
              results: list[PartitionResult] | None = None):  # fmt: skip
    """Partition `part` through `ops` in turn, each handing its kept rows to the next."""
    results = list(results or [])
    for op in ops:
        table, result = op.process(part, table, node)
        results.append(result)
    return table, results


class LocalRunner:
    name = "local"

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def pools(self, ops: list[Op], n_parts: int) -> list[dict]:
        return [{"workers": 1, "cpus_per_worker": None, "gpus_per_worker": None,
                 "batch_size": op.resources.batch_size} for op in ops]  # fmt: skip

    def run_segment(self, ops: list[Op], parts: list[str]) -> Iterator[list[PartitionResult]]:
        started = []
        try:
            for op in ops:
                op.setup()
                started.append(op)
            for part in parts:
                yield run_chain(ops, part)[1]
        finally:
            for op in started:
                op.teardown()

    def describe(self) -> dict:
        return {"runner": "local"}


class _OpActor:
    """Ray Data callable class: one per actor, its ops' stages set up once.  Ray Data deletes the
    instance when the pool shuts down gracefully, and __del__ tears the stages down."""

    def __init__(self, ops: list[Op], last: bool) -> None:
        import ray

        self.ops, self.last = ops, last
        self.node = ray.get_runtime_context().get_node_id()
        for op in ops:
            op.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        parts, payloads, results = [], [], []
        columns = (batch.column(c).to_pylist() for c in ("part", "payload", "results"))
        for part, payload, earlier in zip(*columns):
            earlier = [PartitionResult(**r) for r in json.loads(earlier)]
            table = table_from_bytes(payload) if payload else None
            table, done = run_chain(self.ops, part, table, self.node, earlier)
            parts.append(part)
            payloads.append(table_to_bytes(table) if table is not None and not self.last else b"")
            results.append(json.dumps([r.as_dict() for r in done]))
        return pa.table({"part": parts, "payload": pa.array(payloads, pa.binary()), "results": results})

    def __del__(self) -> None:
        for op in self.ops:
            try:
                op.teardown()
            except Exception:
                log.exception("%s: teardown failed", op.label)


def fuse(ops: list[Op]) -> list[list[Op]]:
    """Consecutive ops that need the same kind of worker (GPUs and custom resources) share one
    actor pool, as Ray Data fuses tasks: a partition then goes through them in one actor, with no
    hand-over and one actor start-up instead of several."""
    groups: list[list[Op]] = []
    for op in ops:
        shape = (op.resources.num_gpus, sorted(op.resources.resources.items()))
        last = groups[-1][-1].resources if groups else None
        if last is not None and (last.num_gpus, sorted(last.resources.items())) == shape:
            groups[-1].append(op)
        else:
            groups.append([op])
    return groups


def group_resources(group: list[Op]) -> Resources:
    """What one worker of a fused group needs: the most CPUs any of its ops asks for, and the
    fewest workers any of them allows."""
    caps = [op.resources.workers for op in group if op.resources.workers]
    first = group[0].resources
    return Resources(num_cpus=max(op.resources.num_cpus for op in group), num_gpus=first.num_gpus,
                     batch_size=first.batch_size, workers=min(caps) if caps else None,
                     resources=first.resources)  # fmt: skip


def pool_sizes(groups: list[list[Op]], cluster: dict[str, float], reserve: float, n_parts: int) -> list[dict]:
    """Each group's actor pool: up to as many actors as the cluster could hold of it alone (by
    CPUs, GPUs and custom resources, capped by `workers` and the partitions), with every actor's
    CPU request scaled down so that all pools at their largest fit beside `reserve` CPUs.  Pools
    that together ask for more CPUs than the cluster has wait for each other and Ray Data hangs."""
    total = cluster.get("CPU", 1.0)
    sizes = []
    for group in groups:
        res = group_resources(group)
        cpus = res.num_cpus or 1.0
        size = max(1, math.floor(total / cpus))
        needs = {"GPU": res.num_gpus} if res.num_gpus else {}
        needs.update(res.resources)
        for name, amount in needs.items():
            have = cluster.get(name, 0.0)
            if have < amount:
                names = ", ".join(op.stage.name for op in group)
                raise UserError(f"{names} needs {amount:g} {name} per worker; the cluster has {have:g}")
            size = min(size, math.floor(have / amount))
        if res.workers:
            size = min(size, res.workers)
        sizes.append((cpus, max(1, min(size, n_parts))))
    budget = max(total - reserve, 0.1 * total)
    scale = min(1.0, budget / sum(cpus * size for cpus, size in sizes))
    return [
        {"workers": size, "cpus_per_worker": cpus, "cpu_request": math.floor(cpus * scale * 1e4) / 1e4,
         "gpus_per_worker": group[0].resources.num_gpus, "resources": group[0].resources.resources,
         "stages": [op.label for op in group]}
        for group, (cpus, size) in zip(groups, sizes)
    ]  # fmt: skip


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
        ctx.enable_progress_bars = False  # the executor shows one progress bar per segment
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

    def _groups(self, ops: list[Op]) -> list[list[Op]]:
        return fuse(ops) if self.config.fuse_stages else [[op] for op in ops]

    def pools(self, ops: list[Op], n_parts: int) -> list[dict]:
        """The pool each op runs in (fused ops share one)."""
        import ray

        groups = self._groups(ops)
        pools = pool_sizes(groups, ray.cluster_resources(), self.config.reserve_cpus, n_parts)
        return [pool for group, pool in zip(groups, pools) for _ in group]

    def run_segment(self, ops: list[Op], parts: list[str]) -> Iterator[list[PartitionResult]]:
        import ray

        if not parts:
            return
        groups = self._groups(ops)
        pools = pool_sizes(groups, ray.cluster_resources(), self.config.reserve_cpus, len(parts))
        log.info("streaming %d partitions through %s", len(parts), " | ".join(
            f"{' + '.join(p['stages'])} ({p['workers']} x {p['cpus_per_worker']:g} CPU"
            + (f", {p['gpus_per_worker']:g} GPU" if p["gpus_per_worker"] else "") + ")"
            for p in pools))  # fmt: skip
        items = [{"part": p, "payload": b"", "results": "[]"} for p in parts]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
            for i, (group, pool) in enumerate(zip(groups, pools)):
                ds = ds.map_batches(
                    _OpActor,
                    fn_constructor_kwargs={"ops": group, "last": i == len(groups) - 1},
                    batch_size=1,
                    batch_format="pyarrow",
                    # every actor from the start (all partitions are queued at once); Ray Data may
                    # retire idle ones, which frees a shared cluster's resources for others
                    compute=ray.data.ActorPoolStrategy(
                        min_size=1, max_size=pool["workers"], initial_size=pool["workers"]
                    ),
                    num_cpus=pool["cpu_request"],
                    num_gpus=pool["gpus_per_worker"] or None,
                    resources=pool["resources"] or None,
                    # an actor option: Ray 2.60 has no named parameter for it and warns
                    max_task_retries=self.config.max_task_retries,
                )
        for row in ds.iter_rows():
            yield [PartitionResult(**r) for r in json.loads(row["results"])]


def make_runner(name: str, config: PipelineConfig, address: str | None, run_root):
    if name == "local":
        return LocalRunner()
    if name == "ray":
        return RayRunner(config.ray, address)
    if name == "beam":
        from vtcurate.pipeline.beam_runner import BeamRunner

        return BeamRunner(config.beam, run_root / "_beam")
    raise ValueError(f"unknown runner {name!r} (local | ray | beam)")
