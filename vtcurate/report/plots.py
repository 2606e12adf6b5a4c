"""Charts for the report, drawn with matplotlib (Agg) and embedded as PNG data URIs."""

from __future__ import annotations

import io

from vtcurate.encoding import data_uri

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def _figure(width: float = 7.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return data_uri(buf.getvalue(), "image/png")


def funnel_chart(funnel: list[dict]) -> str:
    """Per stage: kept rows stacked by language, then rejected rows, as horizontal bars."""
    fig, ax = _figure(7.0, 1.2 + 0.55 * len(funnel))
    stages = [f["stage"] for f in funnel][::-1]
    langs = sorted({lang for f in funnel for lang, v in f["by_language"].items() if v["kept"]})
    left = [0] * len(stages)
    for i, lang in enumerate(langs):
        widths = [f["by_language"].get(lang, {}).get("kept", 0) for f in funnel][::-1]
        label = "kept (language not identified yet)" if lang == "und" else f"kept: {lang}"
        ax.barh(stages, widths, left=left, color=PALETTE[i % len(PALETTE)], label=label)
        left = [a + b for a, b in zip(left, widths)]
    rejected = [f["rejected"] for f in funnel][::-1]
    ax.barh(stages, rejected, left=left, color="#d9d9d9", hatch="//", edgecolor="#999", label="rejected")
    for y, (f, k, r) in enumerate(zip(funnel[::-1], left, rejected)):
        label = f"  {k} clips kept of {f['videos_in']} videos" if f.get("videos_in") is not None else (
            f"  {k} kept / {f['rows_in']} in")  # fmt: skip
        ax.text(k + r, y, label, va="center", fontsize=8)
    ax.set_xlabel("rows")
    ax.set_xlim(0, max(a + b for a, b in zip(left, rejected)) * 1.35 or 1)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4, frameon=False)
    return _png(fig)


def histogram_chart(dist: dict) -> str:
    """Step histograms of each series, with the config's thresholds as dashed lines."""
    fig, ax = _figure()
    edges = dist["edges"]
    for i, (name, hist) in enumerate(dist["series"].items()):
        if hist["n"]:
            ax.stairs(hist["counts"], edges, label=f"{name} (n={hist['n']})",
                      color=PALETTE[i % len(PALETTE)], linewidth=1.6)  # fmt: skip
    for i, (name, value) in enumerate(_threshold_lines(dist["thresholds"])):
        if edges[0] <= value <= edges[-1] * 1.001:
            ax.axvline(value, color="#333", linestyle="--", linewidth=1)
            ax.annotate(name, (value, 1), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=7, va="top", ha="right", xytext=(-2, -2 - 40 * (i % 2)),
                        textcoords="offset points")  # fmt: skip
    ax.set_xlabel(dist["unit"])
    ax.set_ylabel("rows")
    ax.set_title(dist["title"], fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    return _png(fig)


def _threshold_lines(thresholds: dict) -> list[tuple[str, float]]:
    lines = []
    for name, value in thresholds.items():
        if isinstance(value, dict):
            lines += [(f"{name} {k}", float(v)) for k, v in value.items()]
        elif value is not None:
            lines.append((name, float(value)))
    return lines


def timing_chart(timing: list[dict]) -> str:
    fig, ax = _figure(7.0, 0.6 + 0.5 * len(timing))
    stages = [t["stage"] for t in timing][::-1]
    rates = [t.get("rows_per_s") or 0 for t in timing][::-1]
    ax.barh(stages, rates, color=PALETTE[0])
    for y, (rate, t) in enumerate(zip(rates, timing[::-1])):
        ax.text(rate, y, f"  {rate:.1f} rows/s, {t.get('seconds') or 0:.1f} s", va="center", fontsize=8)
    ax.set_xlabel("rows per second (rows processed / stage wall clock)")
    ax.set_xlim(0, max(rates, default=1) * 1.5 or 1)
    return _png(fig)
