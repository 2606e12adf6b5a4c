"""Check a run's decisions against an answer key: jsonl rows of
`{"row": manifest row, "id", "planted": what, "expect_stage": stage or null, "expect_reason": code or null}`
(the demo corpus writes one).  `expect_stage: null` means the row must survive every stage.  A
long video's row may add `expect_clips` (the clips split should cut from it) and `cuts` (times).
A row split into clips counts as rejected where its first clip was.  A row with `expect_text` (burned-in
text planted on it) must also have that text among the lines OCR read (`ocr_text`, spaces and case
aside), or it is `wrong_text`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from vtcurate.pipeline.rundir import RunDir
from vtcurate.stages.base import DROP_REASON
from vtcurate.storage import read_rows

# statuses that mean a stage decided wrongly
WRONG = frozenset(
    {"missed", "wrong_reason", "wrongly_dropped", "dropped_elsewhere", "wrong_split", "wrong_text"}
)
SPLIT = "split"
OCR_STAGE, OCR_TEXT = "text_overlay", "ocr_text"


def _squeeze(text: str) -> str:
    return "".join(text.split()).casefold()


def _ocr_texts(rd: RunDir, finished: list[str]) -> dict[int, str]:
    """What OCR read on each manifest row (its clips' lines joined), where text_overlay ran."""
    if OCR_STAGE not in finished:
        return {}
    texts: dict[int, list[str]] = defaultdict(list)
    sdir = rd.stage(OCR_STAGE)
    for row in read_rows(sdir.kept_parts() + sdir.rejected_parts(), ["row", OCR_TEXT]):
        texts[row["row"]].append(row[OCR_TEXT] or "")
    return {row: "\n".join(t) for row, t in texts.items()}


def answer_key_path(info: dict) -> Path | None:
    """A run's answer key, from its run.json: `report.answer_key`, else answer_key.jsonl beside a
    local input."""
    key = (info.get("config", {}).get("report") or {}).get("answer_key")
    if key is None and info.get("input") and "://" not in info["input"]:
        key = Path(info["input"]).parent / "answer_key.jsonl"
    return Path(key) if key else None


def read_answer_key(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def unenforced_stages(rd: RunDir, finished: list[str]) -> set[str]:
    """Stages that scored but did not drop (random model weights): stats.json `decisions_enforced: false`."""
    return {
        name
        for name in finished
        if rd.stage(name).stats.exists()
        and json.loads(rd.stage(name).stats.read_text("utf-8")).get("decisions_enforced") is False
    }


def evaluate_answer_key(
    rd: RunDir, path: Path | None, finished: list[str], rejected: dict[int, tuple[str, str]] | None = None
) -> dict | None:
    """Each planted case's expected decision against the run's; None without an answer key.
    `rejected` (manifest row -> the first stage and reason that dropped it): decisions other than
    the run's own, such as `whatif`'s."""
    if path is None or not path.is_file():
        return None
    cases = read_answer_key(path)
    if rejected is None:
        rejected = {}
        for name in finished:
            for row in read_rows(rd.stage(name).rejected_parts(), ["row", DROP_REASON, "clip_id"]):
                rejected.setdefault(row["row"], (name, row[DROP_REASON]))
    clips: dict[int, int] = defaultdict(int)  # clips split cut from each row
    if SPLIT in finished:
        for row in read_rows(rd.stage(SPLIT).kept_parts(), ["row"]):
            clips[row["row"]] += 1
    ocr = _ocr_texts(rd, finished) if any(c.get("expect_text") for c in cases) else {}
    planted_rows = {c["row"] for c in cases}
    unenforced = unenforced_stages(rd, finished)  # a stage that did not drop cannot have caught anything
    out_cases = []
    for case in cases:
        got = rejected.get(case["row"])
        want = (case["expect_stage"], case["expect_reason"]) if case["expect_stage"] else None
        if want and want[0] not in finished:
            status = "not_checked" if got is None else "dropped_elsewhere"
        elif want and want[0] in unenforced and got is None:
            status = "not_enforced"
        elif want is None:
            status = "kept_as_expected" if got is None else "wrongly_dropped"
        else:
            status = "caught" if got == want else ("wrong_reason" if got else "missed")
        split = {}
        if case.get("expect_clips") is not None and SPLIT in finished:
            split = {"got_clips": clips[case["row"]]}
            if split["got_clips"] != case["expect_clips"] and status not in WRONG:
                status = "wrong_split"
        text = {}
        if case.get("expect_text") and OCR_STAGE in finished:
            text = {"got_text": ocr.get(case["row"])}
            if _squeeze(case["expect_text"]) not in _squeeze(text["got_text"] or "") and status not in WRONG:
                status = "wrong_text"
        out_cases.append({
            **case, "got_stage": got[0] if got else None, "got_reason": got[1] if got else None,
            **split, **text, "status": status,
        })  # fmt: skip
    clean_dropped = [
        {"row": row, "stage": stage, "reason": reason}
        for row, (stage, reason) in sorted(rejected.items())
        if row not in planted_rows
    ]
    counts: dict[str, int] = defaultdict(int)
    for c in out_cases:
        counts[c["status"]] += 1
    return {
        "file": str(path),
        "cases": out_cases,
        "summary": dict(counts),
        "clean_wrongly_dropped": clean_dropped,
    }
