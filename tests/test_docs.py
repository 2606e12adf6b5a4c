"""README.md and docs/: the generated parts are current, links resolve, and figures come from files
that code wrote (bench/results.md, docs/ablation.md), never typed in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from vtcurate import config_doc
from vtcurate.config import STAGES, PipelineConfig, Strict

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BENCH_MD = ROOT / "bench" / "results.md"
BENCH = "bench/results.md"  # the marker name: <!-- bench/results.md --> ... <!-- end bench/results.md -->
DEDUP = "bench/dedup.md"  # dedup precision and recall for README.md (`python -m bench --only dedup`)
COSTS = "bench/costs.md"  # the filters' cost per clip for README.md (`python -m bench.costs`)
ABLATION = "docs/ablation-summary.md"  # the ablation's result for README.md (`make ablation`)
README_INCLUDES = (DEDUP, COSTS, ABLATION)
WRITTEN_BY_CODE = {"ablation.md", "ablation-summary.md"}  # `make ablation` writes them

# Benchmark-like figures: walls and durations, speed-ups, rates, shares, suite sizes.
WALL = r"\d[\d,.]*\s*(?:ms|s|secs?|seconds?|mins?|minutes?|h|hours?)\b"
SPEEDUP = r"\d[\d,.]*\s*[×x](?![\w×])"  # 2.3×, 3x; not 128×128
RATE = r"\d[\d,.]*\s*(?:[a-z]+\s)?(?:tok(?:en)?s?|clips?|frames?|samples?|captions?|rows?|it|[kKMG]i?B)/s\b"
SHARE = r"\d[\d,.]*\s*%"
TESTS = r"\b\d[\d,]*\s+tests\b"
README_FIGURE = re.compile("|".join((WALL, SPEEDUP, RATE, SHARE, TESTS)))
# In docs/ durations and shares also state behaviour ("an end up to 0.5 s past the duration",
# "at least 98%"), so only rates, speed-ups, suite sizes and walls in minutes count there.
DOCS_FIGURE = re.compile("|".join((SPEEDUP, RATE, TESTS, r"\d[\d,.]*\s*(?:mins?|minutes?)\b")))

LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")


def _docs() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _without_included(text: str, name: str) -> str:
    start, end = f"<!-- {name} -->\n", f"<!-- end {name} -->"
    while start in text:
        head, _, rest = text.partition(start)
        text = head + rest.partition(end)[2]
    return text


# --- docs/config.md -------------------------------------------------------------------------------


def test_config_reference_is_generated_from_the_models():
    current = (DOCS / "config.md").read_text("utf-8")
    assert current == config_doc.markdown(), "docs/config.md is stale: run `make docs`"


def test_config_reference_lists_every_key_of_every_section():
    text = config_doc.markdown()
    expected = [f"`{name}`" for name in PipelineConfig.model_fields]
    expected += [f"`{e.name}.{key}`" for e in STAGES for key in e.section.model_fields]
    expected += ["`ray.stage_resources.<stage>.num_gpus`", "`rewrite.llm (backend: vllm).vllm_args`",
                 "`clip_filter.models.<lang>.pretrained`", "`train.model.clip.name`"]  # fmt: skip
    assert [k for k in expected if k not in text] == []


class _Inner(Strict):
    planted_key: int = Field(7, ge=1, description="a key added on purpose")


class _Section(Strict):
    """A section made up for the test."""

    inner: _Inner = _Inner(planted_key=9)
    by_lang: dict[str, _Inner] = Field(default_factory=dict)
    items: list[_Inner] = Field(default_factory=list)
    mode: Literal["a", "b"] | None = None
    maybe: _Inner | None = None


class _Config(Strict):
    name: str = "x"
    section: _Section = _Section()


def test_the_generator_lists_a_key_added_to_a_model():
    text = config_doc.markdown(_Config)
    assert '| `name` | str | `"x"` |  |' in text
    assert "## `section`\n\nA section made up for the test." in text
    # a nested model's default comes from its enclosing default instance
    assert "| `section.inner.planted_key` | int (≥ 1) | `9` | a key added on purpose |" in text
    assert "| `section.by_lang.<key>.planted_key` | int (≥ 1) | `7` |" in text
    assert "| `section.items[].planted_key` | int (≥ 1) | `7` |" in text
    assert '| `section.mode` | "a" \\| "b" \\| null | `null` |' in text
    assert "| `section.maybe.planted_key` | int (≥ 1) | `7` |" in text


# --- the benchmark table ---------------------------------------------------------------------------


def test_benchmarks_md_holds_bench_results_md_verbatim():
    doc = (DOCS / "benchmarks.md").read_text("utf-8")
    assert config_doc.included(doc, BENCH) == BENCH_MD.read_text("utf-8"), (
        "the table in docs/benchmarks.md differs from bench/results.md: run `make docs`"
    )


def test_include_replaces_only_the_text_between_the_markers():
    doc = "a\n<!-- x.md -->\nold\n<!-- end x.md -->\nb\n"
    assert config_doc.include(doc, "x.md", "new\n") == "a\n<!-- x.md -->\nnew\n<!-- end x.md -->\nb\n"
    with pytest.raises(ValueError):
        config_doc.include("no markers", "x.md", "new\n")


@pytest.mark.parametrize("path", [README, *_docs()], ids=lambda p: p.name)
def test_no_copy_of_benchmark_rows_outside_the_included_table(path):
    text = path.read_text("utf-8")
    if f"<!-- {BENCH} -->" in text:
        assert config_doc.included(text, BENCH) == BENCH_MD.read_text("utf-8"), (
            f"{path.name}: the included bench/results.md is stale: run `make docs`"
        )
    rows = {line for line in BENCH_MD.read_text("utf-8").splitlines() if line.startswith("|")}
    copied = [line for line in _without_included(text, BENCH).splitlines() if line in rows]
    assert copied == [], f"{path.name} carries its own copy of benchmark rows"


# --- typed-in figures ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", README_INCLUDES)
def test_readme_carries_the_measured_figures_verbatim(source):
    readme = README.read_text("utf-8")
    assert config_doc.included(readme, source) == (ROOT / source).read_text("utf-8"), (
        f"the figures in README.md differ from {source}: run `make docs`"
    )


def test_readme_holds_no_benchmark_figures():
    text = README.read_text("utf-8")
    for source in README_INCLUDES:
        text = _without_included(text, source)
    found = README_FIGURE.findall(text)
    assert found == [], f"README.md types in figures {found}: cite a row of docs/benchmarks.md instead"


@pytest.mark.parametrize("path", [p for p in _docs() if p.name not in WRITTEN_BY_CODE], ids=lambda p: p.name)
def test_docs_hold_no_typed_in_rates_or_speedups(path):
    text = _without_included(path.read_text("utf-8"), BENCH)
    found = DOCS_FIGURE.findall(text)
    assert found == [], f"{path.name} types in figures {found}: name the row of bench/results.md instead"


@pytest.mark.parametrize(
    "text",
    ["make demo takes 2.0 min", "344 tests", "12.7 minutes", "scales 1.35× on 2 cores", "3x faster",
     "128 tokens/s", "10.4 output tokens/s", "23 tok/s", "4 clips/s", "231 MB/s", "starts in 34–45 s",
     "98.6%"],
)  # fmt: skip
def test_the_figure_check_catches_figures(text):
    assert README_FIGURE.search(text)


@pytest.mark.parametrize(
    "text", ["128×128 clips", "ViT-B-32", "Python 3.11", "8 key-frames", "R@1", "a 4x4 grid", "in tokens/s"]
)
def test_the_figure_check_lets_plain_numbers_pass(text):
    assert not README_FIGURE.search(text)


# --- links -----------------------------------------------------------------------------------------


def test_relative_links_resolve():
    broken = []
    for path in [README, *_docs()]:
        for target in LINK.findall(_without_code_blocks(path.read_text("utf-8"))):
            if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor of the same page
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []


def test_readme_links_every_doc():
    readme = README.read_text("utf-8")
    assert [p.name for p in _docs() if f"](docs/{p.name})" not in readme] == []


def test_a_tagged_union_gets_one_block_per_variant():
    from pydantic import BaseModel

    from vtcurate.config_doc import keys

    class A(BaseModel):
        kind: Literal["a"] = "a"
        only_a: int = 1

    class B(BaseModel):
        kind: Literal["b"]
        only_b: str = "x"

    class Holder(BaseModel):
        engine: A | B = Field(A(), discriminator="kind")

    paths = [k.path for k in keys(Holder)]
    assert "engine (kind: a).only_a" in paths and "engine (kind: b).only_b" in paths
    assert "engine (kind: a).only_b" not in paths
