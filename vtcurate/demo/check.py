"""Check a demo run against the corpus's answer key; exit non-zero if a decision is wrong.

python -m vtcurate.demo.check DEMO_DIR RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from vtcurate.config import FLOW
from vtcurate.pipeline.rundir import RunDir


def _decisions(rd: RunDir) -> tuple[dict[int, tuple[str, str]], set[int], list[str]]:
    """manifest row -> (stage, reason) for rejected rows; rows kept by the last stage; stages run."""
    rejected: dict[int, tuple[str, str]] = {}
    stages = [s for s in FLOW if rd.stage(s).done]
    for name in stages:
        for path in rd.stage(name).rejected_parts():
            for row in pq.read_table(path, columns=["row", "drop_reason"]).to_pylist():
                rejected[row["row"]] = (name, row["drop_reason"])
    kept: set[int] = set()
    if stages:
        for path in rd.stage(stages[-1]).kept_parts():
            kept.update(pq.read_table(path, columns=["row"]).column("row").to_pylist())
    return rejected, kept, stages


def check(demo_dir: str | Path, run_dir: str | Path) -> tuple[list[str], list[str]]:
    """(report lines, failures)."""
    key_file = Path(demo_dir) / "answer_key.jsonl"
    key = [json.loads(line) for line in key_file.read_text("utf-8").splitlines()]
    rd = RunDir(run_dir)
    rejected, kept, stages = _decisions(rd)
    lines, failures = [], []
    for case in key:
        got = rejected.get(case["row"])
        want_stage, want_reason = case["expect_stage"], case["expect_reason"]
        if want_stage is not None and want_stage not in stages:
            verdict = f"not checked (needs {want_stage})"
            ok = got is None
        elif want_stage is None:
            ok = got is None and case["row"] in kept
            verdict = "kept" if ok else f"WRONG: rejected at {got}"
        else:
            ok = got == (want_stage, want_reason)
            verdict = f"rejected at {want_stage}: {want_reason}" if ok else f"WRONG: got {got}"
        lines.append(f"  {'ok ' if ok else 'BAD'} {case['planted']:<45} {verdict}")
        if not ok:
            failures.append(f"{case['id']} ({case['planted']}): {verdict}")
    index = rd.shards / "index.json"
    if index.exists():
        samples = json.loads(index.read_text("utf-8"))["samples"]
        ok = samples == len(kept)
        lines.append(f"  {'ok ' if ok else 'BAD'} shards hold {samples} samples; last stage kept {len(kept)}")
        if not ok:
            failures.append(f"shards hold {samples} samples but the last stage kept {len(kept)}")
    return lines, failures


def main(argv: list[str]) -> int:
    lines, failures = check(argv[0], argv[1])
    print("planted cases against the answer key:")
    print("\n".join(lines))
    print(f"{len(failures)} wrong decision(s)" if failures else "every planted case decided as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
