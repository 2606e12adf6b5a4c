"""Check a demo run against the corpus's answer key; exit non-zero if a decision is wrong.

python -m vtcurate.demo.check DEMO_DIR RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vtcurate.pipeline.rundir import RunDir
from vtcurate.pipeline.stats import load_stats
from vtcurate.report.answer_key import WRONG, evaluate_answer_key


def check(demo_dir: str | Path, run_dir: str | Path) -> tuple[list[str], list[str]]:
    """(report lines, failures)."""
    rd = RunDir(run_dir)
    stats = load_stats(rd.root)
    result = evaluate_answer_key(rd, Path(demo_dir) / "answer_key.jsonl", [s["stage"] for s in stats])
    if result is None:
        return [], [f"no answer_key.jsonl in {demo_dir}"]
    lines, failures = [], []
    for case in result["cases"]:
        got = f"{case['got_stage']}: {case['got_reason']}" if case["got_stage"] else "kept"
        want = f"{case['expect_stage']}: {case['expect_reason']}" if case["expect_stage"] else "kept"
        if "got_clips" in case:
            got, want = f"{got}, {case['got_clips']} clips", f"{want}, {case['expect_clips']} clips"
        if "got_text" in case:
            got, want = f"{got}, read {case['got_text']!r}", f"{want}, read {case['expect_text']!r}"
        bad = case["status"] in WRONG
        verdict = f"WRONG: expected {want}, got {got}" if bad else f"{case['status']} ({got})"
        lines.append(f"  {'BAD' if bad else 'ok '} {case['planted']:<45} {verdict}")
        if bad:
            failures.append(f"{case['id']} ({case['planted']}): {verdict}")
    for drop in result["clean_wrongly_dropped"]:
        lines.append(f"  BAD clean row {drop['row']} dropped at {drop['stage']}: {drop['reason']}")
        failures.append(f"clean row {drop['row']} dropped at {drop['stage']}: {drop['reason']}")
    index = rd.shards / "index.json"
    if index.exists() and stats:
        samples, kept = json.loads(index.read_text("utf-8"))["samples"], stats[-1]["kept"]
        ok = samples == kept
        lines.append(f"  {'ok ' if ok else 'BAD'} shards hold {samples} samples; last stage kept {kept}")
        if not ok:
            failures.append(f"shards hold {samples} samples but the last stage kept {kept}")
    return lines, failures


def main(argv: list[str]) -> int:
    lines, failures = check(argv[0], argv[1])
    print("planted cases against the answer key:")
    print("\n".join(lines))
    print(f"{len(failures)} wrong decision(s)" if failures else "every planted case decided as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
