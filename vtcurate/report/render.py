"""Render report.json and a self-contained report/index.html (no network: charts and key-frames
are embedded as data URIs; Jinja2 autoescaping makes every caption inert text)."""

from __future__ import annotations

import json
from pathlib import Path

from vtcurate.report import plots
from vtcurate.report.answer_key import WRONG
from vtcurate.report.collect import collect
from vtcurate.storage import write_json, write_text


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "—" if value is None else str(value)


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render_html(report: dict) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("vtcurate.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters.update(
        fmt=_fmt,
        bytes=_bytes,
        tojson_pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    )
    charts = {
        "funnel": plots.funnel_chart(report["funnel"]) if report["funnel"] else "",
        "timing": plots.timing_chart(report["timing"]) if report["timing"] else "",
        "distributions": {k: plots.histogram_chart(d) for k, d in report["distributions"].items()},
    }
    return env.get_template("report.html.j2").render(r=report, charts=charts, wrong=WRONG)


def write_report(run_dir: str | Path, answer_key: str | Path | None = None) -> Path:
    """Write RUN_DIR/report/report.json and index.html; return the HTML path."""
    out = Path(run_dir) / "report"
    report = collect(run_dir, answer_key)
    write_json(report, out / "report.json")
    html_path = out / "index.html"
    write_text(render_html(report), html_path)
    return html_path
