"""Rules of the project that a grep can keep: no test compares a wall-clock duration (performance
claims live in `make bench`, as ratios against a baseline of the same run).  Deadlines that only
stop a hung test (`while time.monotonic() < deadline`) are not assertions and stay allowed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TIMED = r"(\belapsed\b|perf_counter\(|monotonic\(|time\.time\(|\b\w*seconds\w*\b|\bwall\w*\b|\btook\b)"
COMPARES = re.compile(rf"^\s*assert\b(?=.*{TIMED})(?=.*(?<![-=!])[<>]=?(?!>))")


def test_no_test_asserts_a_time():
    found = [
        f"{path.relative_to(TESTS.parent)}:{n}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != Path(__file__)
        for n, line in enumerate(path.read_text("utf-8").splitlines(), start=1)
        if COMPARES.search(line)
    ]
    assert not found, found


def test_the_rule_catches_timed_assertions():
    for line in ("assert elapsed < 1.4", "    assert time.monotonic() - t0 <= 2.0",
                 "assert stats['seconds'] < 300", "assert wall_s > 0.5 * base"):  # fmt: skip
        assert COMPARES.search(line), line
    for line in ("assert seconds.ratio == 4", "assert info.duration < 11",
                 "while time.monotonic() < deadline:", "assert [t['seconds'] for t in x] == y"):  # fmt: skip
        assert not COMPARES.search(line), line


def test_a_failed_vllm_install_is_loud_in_the_summary(tmp_path):
    error = "ERROR: No matching distribution found for torch==2.13.0+cpu"
    (tmp_path / ".failed-0123").write_text(f"...\n{error}\n")
    env = {**os.environ, "VTC_VLLM_VENV": str(tmp_path)}
    one_test = f"{__file__}::test_the_rule_catches_timed_assertions"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", one_test],
                         cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:]
    summary = out.stdout[out.stdout.index("vLLM TESTS DID NOT RUN"):]
    assert error in summary

