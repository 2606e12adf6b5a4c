"""How well each deciding stage of a run separates planted rows from clean ones, against an answer key.

For each stage: the manifest rows it read (`input`; a row split into clips counts once, by its first
clip), its rejections split into those of rows the key expects this stage to drop (`expected`),
rows the key expects another stage to drop (`other_planted`) and rows that should survive
(`clean`: rows the key does not list, or lists with `expect_stage: null`); then
- `precision`: expected rejections / rejections; `recall`: expected rejections / expected rows it
  read (rows dropped before it do not count against it);
- `auc`: for each score the stage records, the ROC AUC of that score separating the expected rows
  it read from the clean rows it read (1: every planted row scores worse than every clean one;
  0.5: chance), oriented so that higher means "worse" (clip_score and motion_score low, text_area
  and blank_fraction high; langid: the confidence of an allowed language, 0 for another one);
- `kinds`: the same per planted kind (the key's `planted`), each kind's rows against the clean
  rows, for every kind that reached the stage, expected there or not.
A stage that records decisions without enforcing them (clip_filter with random weights,
`enforced: false`) is judged on the decision it recorded (`clip_pass` false: what it would have
dropped), so a random scorer shows the precision of chance.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.stats import load_stats
from vtcurate.report.answer_key import read_answer_key, unenforced_stages
from vtcurate.stages.base import DROP_REASON
from vtcurate.storage import read_rows

# stage -> {score name: (column, sign)}; sign -1: a low value is the planted side
SCORES = {
    "langid": {"lang_score": ("lang_score", -1)},
    "motion": {"motion_score": ("motion_score", -1), "blank_fraction": ("blank_fraction", 1)},
    "text_overlay": {"text_area": ("text_area", 1)},
    "clip_filter": {"clip_score": ("clip_score", -1)},
}
WOULD_REJECT = {"clip_filter": "clip_pass"}  # a recorded decision, False where the stage would drop


def roc_auc(scores: list[float], labels: list[bool]) -> float | None:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney U over mid-ranks);
    None without both classes."""
    x, y = np.asarray(scores, float), np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x))
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for a, b in zip(starts, ends):  # tied values share the mean of their ranks (1-based)
        ranks[order[a:b]] = (a + b + 1) / 2
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _stage_rows(rd: RunDir, stage: str, languages: list[str]) -> dict[int, dict]:
    """manifest row -> {rejected: bool, scores...}, the first clip of each row."""
    sdir = rd.stage(stage)
    paths = sdir.kept_parts() + sdir.rejected_parts()
    scores = SCORES.get(stage, {})
    would = WOULD_REJECT.get(stage)
    columns = ["row", DROP_REASON, *(c for c, _ in scores.values()), *(["lang"] if stage == "langid" else []),
               *([would] if would else [])]  # fmt: skip
    out: dict[int, dict] = {}
    for r in read_rows(paths, columns):
        if r["row"] in out:
            continue
        values = {}
        for name, (col, sign) in scores.items():
            v = r[col]
            if stage == "langid" and r["lang"] not in languages:
                v = 0.0  # the confidence of an allowed language: none
            values[name] = None if v is None else sign * float(v)
        rejected = r[DROP_REASON] is not None or (would is not None and r[would] is False)
        out[r["row"]] = {"rejected": rejected, "scores": values}
    return out


def _auc(rows: dict[int, dict], positive: list[int], negative: list[int], name: str) -> float | None:
    labelled = [(i, True) for i in positive] + [(i, False) for i in negative]
    pairs = [(rows[i]["scores"][name], lab) for i, lab in labelled if rows[i]["scores"][name] is not None]
    return roc_auc([s for s, _ in pairs], [lab for _, lab in pairs])


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _judge(stage: str, rows: dict[int, dict], expected: dict[int, str | None], kind: dict[int, str],
           enforced: bool) -> dict:  # fmt: skip
    """One stage's rejections and scores against the key (`expected`: planted row -> its stage)."""
    target = [i for i in rows if expected.get(i) == stage]
    clean = [i for i in rows if expected.get(i) is None]
    rejected = [i for i in rows if rows[i]["rejected"]]
    hit = sum(expected.get(i) == stage for i in rejected)
    lost = sum(expected.get(i) is None for i in rejected)
    by_kind: dict[str, list[int]] = defaultdict(list)
    for i in rows:
        if i in kind and expected.get(i) is not None:
            by_kind[kind[i]].append(i)
    names = list(SCORES.get(stage, {}))
    return {
        "enforced": enforced,
        "input": len(rows),
        "rejected": len(rejected),
        "rejected_expected": hit,
        "rejected_other_planted": len(rejected) - hit - lost,
        "rejected_clean": lost,
        "expected": len(target),
        "precision": _ratio(hit, len(rejected)),
        "recall": _ratio(hit, len(target)),
        "auc": {n: _auc(rows, target, clean, n) for n in names},
        "kinds": {
            k: {
                "expected_here": expected[members[0]] == stage,
                "n": len(members),
                "rejected": sum(rows[i]["rejected"] for i in members),
                "auc": {n: _auc(rows, members, clean, n) for n in names},
            }
            for k, members in sorted(by_kind.items())
        },
    }


def filter_quality(run_dir: str | Path, answer_key: str | Path | None) -> dict | None:
    """Each deciding stage of a run judged against an answer key (see the module docstring); None
    without a key.  Stages that neither reject, nor score, nor are expected to drop a row are left out."""
    path = Path(answer_key) if answer_key else None
    if path is None or not path.is_file():
        return None
    rd = RunDir(run_dir)
    info = rd.read_run_json() or {}
    finished = [s["stage"] for s in load_stats(rd.root)]
    languages = (info.get("config", {}).get("langid") or {}).get("languages") or []
    cases = read_answer_key(path)
    expected = {c["row"]: c["expect_stage"] for c in cases}
    kind = {c["row"]: c["planted"] for c in cases}
    unenforced = unenforced_stages(rd, finished)
    stages = {}
    for stage in finished:
        rows = _stage_rows(rd, stage, languages)
        judged = _judge(stage, rows, expected, kind, stage not in unenforced)
        if judged["rejected"] or judged["expected"] or stage in SCORES:
            stages[stage] = judged
    not_run: dict[str, int] = defaultdict(int)
    for stage in expected.values():
        if stage and stage not in finished:
            not_run[stage] += 1
    return {"file": str(path), "stages": stages, "not_run": dict(not_run)}


def format_quality(quality: dict) -> str:
    """A terminal table: one line per stage, then one per planted kind it should drop or dropped
    (report.json has every kind that reached it)."""
    head = (
        f"{'stage':<13}{'input':>7}{'rejected':>9}{'expected':>9}{'other':>7}{'clean':>7}"
        f"{'precision':>10}{'recall':>8}  auc"
    )
    lines = [f"answer key {quality['file']}", head, "-" * len(head)]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f}%"

    def aucs(d: dict) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in d.items() if v is not None)

    for stage, q in quality["stages"].items():
        note = "" if q["enforced"] else "  (recorded, not enforced)"
        lines.append(f"{stage:<13}{q['input']:>7}{q['rejected']:>9}{q['rejected_expected']:>9}"
                     f"{q['rejected_other_planted']:>7}{q['rejected_clean']:>7}{pct(q['precision']):>10}"
                     f"{pct(q['recall']):>8}  {aucs(q['auc'])}{note}")  # fmt: skip
        for k, kq in q["kinds"].items():
            if not (kq["expected_here"] or kq["rejected"]):
                continue
            mark = "*" if kq["expected_here"] else " "
            lines.append(f"  {mark} {k:<24} {kq['rejected']:>4} of {kq['n']:<5} {aucs(kq['auc'])}")
    if quality["not_run"]:
        lines.append("expected at stages that did not run: "
                     + ", ".join(f"{s} {n}" for s, n in quality["not_run"].items()))  # fmt: skip
    lines.append("* kinds the key expects this stage to drop; precision and recall count only those")
    return "\n".join(lines)
