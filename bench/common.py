"""Timing, results and the machine description shared by the benchmarks."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"  # generated inputs and scratch (git-ignored)
RESULTS_JSON = Path(__file__).resolve().parent / "results.json"
RESULTS_MD = Path(__file__).resolve().parent / "results.md"
DOCS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"  # carries results.md verbatim
README = Path(__file__).resolve().parents[1] / "README.md"  # carries dedup.md and costs.md verbatim


def median_time(fn: Callable[[], object], reps: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of `reps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Row:
    """One measured figure: `value` in `unit`, and `ratio` = value relative to `baseline`."""

    group: str
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: float | None = None  # the ratio the issue asks for, where it sets one
    note: str = ""
    extra: dict = field(default_factory=dict)
    suite: str = ""  # the bench group that measured it (set by bench.__main__)

    @property
    def met(self) -> bool | None:
        return None if self.target is None or self.ratio is None else self.ratio >= self.target


def ratio_row(
    group: str,
    name: str,
    value: float,
    unit: str,
    baseline: str,
    base: float,
    *,
    higher_is_better: bool = True,
    target: float | None = None,
    note: str = "",
) -> Row:
    ratio = (value / base if higher_is_better else base / value) if base and value else None
    return Row(group, name, value, unit, baseline, base, ratio, target, note)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    return {
        "cpus": os.cpu_count(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(rows: list[Row], suite_seconds: dict[str, float]) -> None:
    """Write the results; a partial run (some suites) replaces only those suites' rows."""
    kept, seconds = [], dict(suite_seconds)
    if RESULTS_JSON.exists():
        previous = json.loads(RESULTS_JSON.read_text())
        kept = [r for r in previous["rows"] if r.get("suite") not in suite_seconds]
        for suite, secs in previous.get("suite_seconds", {}).items():
            seconds.setdefault(suite, secs)
    payload = {
        "machine": machine(),
        "seconds": sum(seconds.values()),
        "suite_seconds": seconds,
        "rows": kept + [{**asdict(r), "met": r.met} for r in rows],
    }
    RESULTS_JSON.write_text(json.dumps(payload, indent=1) + "\n")
    RESULTS_MD.write_text(markdown(payload) + "\n")
    from vtcurate.config_doc import include

    doc = include(DOCS_MD.read_text("utf-8"), "bench/results.md", RESULTS_MD.read_text("utf-8"))
    DOCS_MD.write_text(doc, "utf-8")
    from bench.costs import write as write_costs

    write_costs(payload)


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def markdown(payload: dict) -> str:
    m = payload["machine"]
    lines = [
        f"Machine: {m['cpus']} CPUs ({m['processor']}), {'GPU ' + m['cuda'] if m['cuda'] else 'no GPU'}; "
        f"Python {m['python']}, torch {m['torch']}. Suite wall time {payload['seconds'] / 60:.1f} min. "
        "Each figure is the median of its repetitions; ratio = figure / baseline (higher is better).",
        "",
        "| group | measurement | value | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        base = f"{r['baseline']}: {_fmt(r['baseline_value'])}" if r["baseline"] else "—"
        target = "—" if r["target"] is None else f"≥ {r['target']:g}× {'met' if r['met'] else 'MISSED'}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        note = f" ({r['note']})" if r["note"] else ""
        value = f"{_fmt(r['value'])} {r['unit']}"
        lines.append(f"| {r['group']} | {r['name']}{note} | {value} | {base} | {ratio} | {target} |")
    return "\n".join(lines)
