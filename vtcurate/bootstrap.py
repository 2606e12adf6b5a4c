"""`vtcurate bootstrap`: a curation loop that trains its own filter.

Pass 1 curates with the config as given (rule stages; a clip_filter scorer with random weights only
records its scores) and trains a model on the shards.  Each later pass curates the same input again
with the previous pass's trained backbone as the clip_filter scorer (threshold `bootstrap.threshold`)
and, with `bootstrap.aux_caption`, as aux_caption's retrieval model, then trains again.  This is for a
domain or language with no good pretrained model: the model learns from data that the rules cleaned,
then cleans the data it learns from next.

    WORK/pass1, WORK/pass2, ...   one run directory each (`vtcurate run` layout; rerunning resumes)
    WORK/bootstrap.json, .md      per pass: rows kept, filter quality against an answer key, held-out
                                  retrieval of the pass's model
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vtcurate.config import TRAIN, PipelineConfig
from vtcurate.errors import UserError
from vtcurate.pipeline.rundir import RunDir
from vtcurate.report.answer_key import answer_key_path
from vtcurate.storage import write_json

log = logging.getLogger(__name__)

NEEDED = ("clip_filter", "shard", TRAIN)


def scorer_config(config: PipelineConfig, backbone: Path) -> PipelineConfig:
    """`config` with a trained backbone as the clip_filter scorer (and aux_caption's retrieval model)."""
    spec = config.train.model.clip.model_copy(update={"pretrained": str(backbone)})
    clip_filter = config.clip_filter.model_copy(
        update={"models": {"*": spec}, "thresholds": {"*": config.bootstrap.threshold}}
    )
    update: dict = {"clip_filter": clip_filter}
    if config.bootstrap.aux_caption and config.aux_caption.backend == "retrieval":
        update["aux_caption"] = config.aux_caption.model_copy(update={"clip": spec})
    return config.model_copy(update=update)


def pass_dirs(work: Path, passes: int) -> list[Path]:
    return [work / f"pass{n}" for n in range(1, passes + 1)]


def _check(config: PipelineConfig) -> None:
    missing = [s for s in NEEDED if s not in config.stages]
    if missing:
        raise UserError(f"bootstrap needs the stages {list(NEEDED)} in `stages`, missing {missing}")


def _pass_row(
    n: int, run_dir: Path, stats: list[dict], heldout: tuple[Path, Path] | None, key: Path | None
) -> dict:
    from vtcurate.train.evaluate import evaluate_folder
    from vtcurate.train.loop import load_trained

    rd = RunDir(run_dir)
    info = json.loads(rd.run_json.read_text("utf-8"))
    row: dict = {
        "pass": n,
        "run_dir": str(run_dir),
        "scorer": info["config"]["clip_filter"]["models"]["*"].get("pretrained") or "config",
        "rows_in": stats[0]["rows_in"],
        "kept": stats[-1]["kept"],
        "train_s": info[TRAIN]["seconds"],
    }
    if key is not None:
        from vtcurate.report.filter_quality import filter_quality

        row["filter_quality"] = filter_quality(run_dir, key)
    if heldout is not None:
        model = load_trained(rd.root / TRAIN / "model.pt")
        row["heldout"] = evaluate_folder(model, heldout[0], heldout[1], rd.root / TRAIN / "heldout")
    return row


def bootstrap(
    config: PipelineConfig,
    manifest: str,
    work: str | Path,
    heldout: tuple[Path, Path] | None = None,
    **options,
) -> dict:
    """Run `config.bootstrap.passes` curate + train passes; `options` as for `workflow.run`."""
    from vtcurate.workflow import run

    _check(config)
    work = Path(work).resolve()
    rows: list[dict] = []
    backbone: Path | None = None
    for n, run_dir in enumerate(pass_dirs(work, config.bootstrap.passes), 1):
        cfg = config if backbone is None else scorer_config(config, backbone)
        log.info("bootstrap pass %d of %d: %s", n, config.bootstrap.passes, run_dir)
        stats = run(cfg, manifest, run_dir, **options)
        key = answer_key_path(json.loads(RunDir(run_dir).run_json.read_text("utf-8")))
        rows.append(_pass_row(n, run_dir, stats, heldout, key if key and key.is_file() else None))
        backbone = run_dir / TRAIN / "clip_backbone.pt"
    result = {"work": str(work), "passes": rows}
    write_json(result, work / "bootstrap.json")
    (work / "bootstrap.md").write_text(markdown(result), "utf-8")
    return result


def pass_quality(quality: dict | None) -> dict:
    """The clip_filter's figures of a pass: AUC of clip_score on mismatched captions, precision and
    recall of what it dropped (or would have dropped, if not enforced) against its planted kinds."""
    clip = ((quality or {}).get("stages") or {}).get("clip_filter") or {}
    mismatch = clip.get("kinds", {}).get("mismatch", {}).get("auc", {})
    return {
        "auc_mismatched": mismatch.get("clip_score"),
        "precision": clip.get("precision"),
        "recall": clip.get("recall"),
        "enforced": clip.get("enforced"),
    }


def _quality_cells(row: dict) -> list[str]:
    q = pass_quality(row.get("filter_quality"))
    return ["—" if q[k] is None else f"{q[k]:.3f}" for k in ("auc_mismatched", "precision", "recall")]


def markdown(result: dict) -> str:
    head = ["pass", "scorer", "kept", "clip_filter AUC (mismatched)", "precision", "recall",
            "held-out t2v R@1", "v2t R@1", "train s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["passes"]:
        overall = (row.get("heldout") or {}).get("overall")
        retrieval = [f"{overall[d]['R@1']:.1f}" for d in ("t2v", "v2t")] if overall else ["—", "—"]
        scorer = "config" if row["scorer"] == "config" else f"pass {row['pass'] - 1} model"
        cells = [str(row["pass"]), scorer, f"{row['kept']} of {row['rows_in']}", *_quality_cells(row),
                 *retrieval, f"{row['train_s']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
