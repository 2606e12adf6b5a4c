"""A decision changed without recomputing a score.

Each key of a stage's config section is a decision key (`<Section>.decision_keys`: what the stage
decides from stored scores) or a scoring key (everything else).  When a run directory is run
again with a changed config:

- a changed scoring key of stage S discards S and every stage after it (they are recomputed; the
  message names the keys);
- changed decision keys of a finished stage re-apply its decisions to its stored rows: kept and
  rejected rows are read back (every input row is there, with its scores), the rejections its
  decision step gave are cleared, and the decision step runs again: `Stage.redecide` per row, or
  a new run-wide `plan` and `apply_plan` for global_plan stages.  No model is loaded.  The new
  outputs are written beside the old ones and swapped in, so a crash leaves either;
- a stage after one whose kept rows changed is discarded and recomputed (its content caches, such
  as rewrite's generation cache, keep what was generated before).

`whatif` runs the same re-decision in memory and counts what a run would then keep.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vtcurate.config import FLOW, PipelineConfig
from vtcurate.pipeline.rundir import SUCCESS, RunDir, StageDir
from vtcurate.stages.base import DROP_REASON, Stage, reopen
from vtcurate.storage import touch, write_json, write_parquet

log = logging.getLogger(__name__)


@dataclass
class ConfigChange:
    scoring: dict[str, list[str]] = field(default_factory=dict)  # stage -> changed scoring keys
    decision: dict[str, list[str]] = field(default_factory=dict)  # stage -> changed decision keys

    def __bool__(self) -> bool:
        return bool(self.scoring or self.decision)


def _section_model(config: PipelineConfig, stage: str):
    return type(getattr(config, stage))


def split_section(config: PipelineConfig, stage: str) -> tuple[dict, dict]:
    """(scoring keys, decision keys) of a stage's section, as JSON values."""
    section = getattr(config, stage).model_dump(mode="json")
    decisions = _section_model(config, stage).decision_keys
    return ({k: v for k, v in section.items() if k not in decisions},
            {k: v for k, v in section.items() if k in decisions})  # fmt: skip


def compare(previous: dict, config: PipelineConfig) -> ConfigChange:
    """Which keys of which stages changed since the config a run directory recorded."""
    change = ConfigChange()
    for stage in FLOW:
        old = previous.get(stage, {})
        new = getattr(config, stage).model_dump(mode="json")
        decisions = _section_model(config, stage).decision_keys
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        scoring = [k for k in keys if k not in decisions]
        if scoring:
            change.scoring[stage] = scoring
        elif keys:
            change.decision[stage] = keys
    return change


def stored_rows(sdir: StageDir, source: Path, part: str) -> pa.Table:
    """Every row a stage wrote for a partition (kept and rejected), in the order it read them:
    by clip id (a split stage's clips by their video, then in time order); the manifest row
    number tells apart rows sharing an id (`duplicate_id`)."""
    kept, rejected = (pq.read_table(p) for p in sdir.part_files(part))
    rows = pa.concat_tables([kept, rejected], promote_options="permissive")
    ids = pq.read_table(source / f"{part}.parquet", columns=["clip_id"]).column("clip_id").to_pylist()
    order = {cid: i for i, cid in reversed(list(enumerate(ids)))}

    def col(name: str) -> list:
        return rows.column(name).to_pylist() if name in rows.column_names else [None] * rows.num_rows

    columns = zip(col("clip_id"), col("parent_id"), col("row"), col("shot_index"))
    keys = [(order[c] if c in order else order[p], n or 0, s or 0) for c, p, n, s in columns]
    return rows.take(sorted(range(rows.num_rows), key=keys.__getitem__))


def redecide(stage: Stage, tables: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], dict | None]:
    """The stage's decisions made again on its stored rows, per partition; and its new run-wide
    plan (global_plan stages)."""
    if not stage.global_plan:
        return {part: stage.redecide(table) for part, table in tables.items()}, None
    scored = {part: reopen(table, stage.decision_reasons) for part, table in tables.items()}
    with tempfile.TemporaryDirectory(prefix="vtcurate-plan-") as tmp:
        paths = []
        for part, table in scored.items():
            paths.append(Path(tmp) / f"{part}.parquet")
            pq.write_table(table, paths[-1])
        plan = stage.plan(paths)
    return {part: stage.apply_plan(table, plan) for part, table in scored.items()}, plan


def _built(rd: RunDir, config: PipelineConfig, name: str) -> Stage:
    """The stage, given every stage's provenance from run.json as the executor gives it (a decision
    may depend on another stage's models: semantic_dedup's on clip_filter's weights)."""
    from vtcurate.stages import build_stage

    stage = build_stage(name, config)
    stage.run_provenance = (rd.read_run_json() or {}).get("stages", {})
    return stage


def _kept_ids(tables: dict[str, pa.Table]) -> set[str]:
    kept = (t.filter(pc.is_null(t.column(DROP_REASON))) for t in tables.values())
    return {c for t in kept for c in t.column("clip_id").to_pylist()}


def _source(rd: RunDir, config: PipelineConfig, stage: str) -> Path:
    earlier = [s for s in config.stages if s in FLOW and FLOW.index(s) < FLOW.index(stage)]
    return rd.stage(earlier[-1]).kept if earlier else rd.ingest_input()


def _parts(sdir: StageDir) -> list[str]:
    return [p.stem for p in sdir.kept_parts()]


def _rewrite_stage(rd: RunDir, config: PipelineConfig, stage: Stage, keys: list[str]) -> bool:
    """Re-apply a finished stage's decisions; True if the rows it keeps changed."""
    from vtcurate.pipeline.stats import stage_stats

    sdir, source = rd.stage(stage.name), _source(rd, config, stage.name)
    before = {part: stored_rows(sdir, source, part) for part in _parts(sdir)}
    after, plan = redecide(stage, before)
    new = StageDir(sdir.path.with_name(sdir.path.name + ".redecided"))
    shutil.rmtree(new.path, ignore_errors=True)
    for part, table in after.items():
        dropped = pc.is_valid(table.column(DROP_REASON))
        write_parquet(table.filter(dropped), new.rejected / f"{part}.parquet")
        write_parquet(table.filter(pc.invert(dropped)), new.kept / f"{part}.parquet")
    for extra in ("_input", "_upstream", "outputs"):  # the staged manifest, the upstream marker
        src = sdir.path / extra
        if src.is_dir():
            shutil.copytree(src, new.path / extra)
        elif src.exists():
            shutil.copy(src, new.path / extra)
    if plan is not None:
        write_json(plan, new.plan)
    old_stats = json.loads(sdir.stats.read_text("utf-8"))
    rows_in = sum(t.num_rows for t in before.values())
    stats = stage_stats(stage.name, new, rows_in, stage.score_columns, stage.splits_rows)
    stats = {**old_stats, **stats, "redecided": {"keys": keys}, **stage.summary()}
    write_json(stats, new.stats)
    touch(new.path / SUCCESS)
    old = sdir.path.with_name(sdir.path.name + ".old")
    sdir.path.rename(old)
    new.path.rename(sdir.path)
    shutil.rmtree(old)
    changed = _kept_ids(before) != _kept_ids(after)
    log.info("%s: decisions re-applied from stored scores (%s changed)%s", stage.name, ", ".join(keys),
             "; the rows it keeps changed" if changed else "; it keeps the same rows")  # fmt: skip
    return changed


def apply_changes(rd: RunDir, config: PipelineConfig, change: ConfigChange) -> dict:
    """Bring a run directory's finished stages in line with the config (see the module doc)."""
    from vtcurate.config import TRAIN

    done: dict[str, list[str]] = {"redecided": [], "discarded": []}
    stale = False  # an earlier stage's output changed: every later stage must be recomputed
    for name in (s for s in FLOW if s in config.stages):
        sdir = rd.stage(name)
        if name in change.scoring and not stale:
            log.warning("%s: scoring key(s) %s changed: %s and every stage after it are recomputed",
                        name, ", ".join(change.scoring[name]), name)  # fmt: skip
            stale = True
        if stale:
            if sdir.path.exists():
                shutil.rmtree(sdir.path)
                done["discarded"].append(name)
            continue
        if name not in change.decision or not sdir.path.exists():
            continue
        if sdir.done:
            stale = _rewrite_stage(rd, config, _built(rd, config, name), change.decision[name])
            done["redecided"].append(name)
        else:  # partitions decided by the old keys: not to be reused
            shutil.rmtree(sdir.path)
            done["discarded"].append(name)
    if stale:
        shutil.rmtree(rd.root / TRAIN, ignore_errors=True)  # trained on shards that no longer hold
    return done


def _counts(name: str, tables: dict[str, pa.Table], unscored: int) -> dict:
    rows = pa.concat_tables(list(tables.values()), promote_options="permissive") if tables else None
    reasons = rows.column(DROP_REASON).to_pylist() if rows is not None else []
    has_lang = rows is not None and "lang" in rows.column_names
    langs = rows.column("lang").to_pylist() if has_lang else [None] * len(reasons)
    by_lang: dict[str, dict[str, int]] = {}
    for lang, reason in zip(langs, reasons):
        entry = by_lang.setdefault(lang or "und", {"kept": 0, "rejected": 0})
        entry["kept" if reason is None else "rejected"] += 1
    by_reason: dict[str, int] = {}
    for reason in reasons:
        if reason is not None:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    kept = sum(r is None for r in reasons)
    return {"stage": name, "rows_in": len(reasons) + unscored, "kept": kept, "rejected": len(reasons) - kept,
            "rejected_by_reason": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])),
            "by_language": dict(sorted(by_lang.items())), "unscored": unscored}  # fmt: skip


def whatif(run_dir: str | Path, overrides: list[str]) -> list[dict]:
    """The funnel a run with `overrides` (decision keys) would give, from the stored scores of the
    finished stages, writing nothing; in the shape of `vtcurate stats --json`, plus `by_language`
    and `unscored`: rows that would newly reach a stage whose scores were never computed for them
    (a looser decision upstream), whose fate only a run can tell."""
    return whatif_run(run_dir, overrides)[0]


def whatif_run(
    run_dir: str | Path, overrides: list[str], stored: dict | None = None
) -> tuple[list[dict], dict[int, tuple[str, str]]]:
    """`whatif`'s funnel, and the manifest rows it would drop: row -> (the first stage, reason).
    `stored`: a dict kept across calls on one run (a sweep), so each partition is read once."""
    stored = {} if stored is None else stored
    from vtcurate.config import apply_override, validate
    from vtcurate.errors import UserError

    rd = RunDir(run_dir)
    info = rd.read_run_json()
    if info is None:
        raise UserError(f"{run_dir} is not a run directory (no run.json)")
    raw = json.loads(json.dumps(info["config"]))
    for assignment in overrides:
        apply_override(raw, assignment)
    config = validate(raw)
    change = compare(info["config"], config)
    if change.scoring:
        keys = [f"{s}.{k}" for s, ks in change.scoring.items() for k in ks]
        raise UserError(f"whatif re-applies decisions from stored scores; {keys} are scoring keys "
                        "(a run with them recomputes that stage and the ones after it)")  # fmt: skip
    funnel, reaching = [], None  # reaching: clip ids that would reach the next stage (None: as stored)
    dropped: dict[int, tuple[str, str]] = {}
    for name in (s for s in FLOW if s in config.stages and rd.stage(s).done):
        stage, sdir = _built(rd, config, name), rd.stage(name)
        for part in _parts(sdir):
            if (name, part) not in stored:
                stored[name, part] = stored_rows(sdir, _source(rd, config, name), part)
        tables = {part: stored[name, part] for part in _parts(sdir)}
        unscored: set[str] = set()

        def key(t: pa.Table, split: bool = stage.splits_rows) -> pa.ChunkedArray:  # what the stage read
            return pc.coalesce(t.column("parent_id"), t.column("clip_id")) if split else t.column("clip_id")

        if reaching is not None:
            unscored = reaching - {c for t in tables.values() for c in key(t).to_pylist()}
            wanted = pa.array(sorted(reaching), pa.string())
            tables = {p: t.filter(pc.is_in(key(t), value_set=wanted)) for p, t in tables.items()}
        if name in change.decision or (reaching is not None and stage.global_plan):
            tables, _ = redecide(stage, tables)
        counts = _counts(name, tables, len(unscored))
        for table in (t for t in tables.values() if "row" in t.column_names):
            for row, reason in zip(table.column("row").to_pylist(), table.column(DROP_REASON).to_pylist()):
                if reason is not None:
                    dropped.setdefault(row, (name, reason))
        if stage.splits_rows:  # rows in are videos, kept are clips
            videos = {v for t in tables.values() for v in key(t).to_pylist()}
            counts["rows_in"] = counts["videos_in"] = len(videos) + len(unscored)
        funnel.append(counts)
        if name in change.decision or reaching is not None:
            reaching = _kept_ids(tables) | unscored  # unscored rows: their fate here is unknown
    return funnel, dropped
