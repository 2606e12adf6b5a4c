"""Shared fixtures: the real test data beside the project, and one demo corpus + run per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from models.fake_openai import FakeOpenAIServer, last_user_text

from helpers import CONFIGS, SHARED_DATA, vllm_env_problem

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_terminal_summary(terminalreporter) -> None:
    """A vLLM environment that failed to install skips its tests; say so where nobody misses it."""
    problem = vllm_env_problem()
    if problem:
        terminalreporter.write_sep("!", "vLLM TESTS DID NOT RUN", red=True, bold=True)
        lines = [line for line in problem.splitlines() if line.strip()]
        for line in dict.fromkeys([lines[0], lines[-1]]):  # what failed, and the log's last word on it
            terminalreporter.write_line(line)
        terminalreporter.write_line("retried when VLLM_PINS or VLLM_PIP_ARGS in the Makefile change, or after"
                                    " `rm -rf .venv-vllm`; docs/setup.md says where its CPU torch comes from")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (../shared/data beside the project)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    from vtcurate.demo.corpus import generate

    out = tmp_path_factory.mktemp("demo")
    generate(out, clips=24, seed=1)
    return out


def echo_rewrite(request: dict) -> str:
    """A well-behaved fake LLM: the caption of the rewrite prompt, tidied."""
    text = last_user_text(request)
    for label in ("Caption: ", "标题："):
        text = text.split(label, 1)[-1]
    text = text.strip()
    return text[:1].upper() + text[1:] + ("。" if any("\u4e00" <= c <= "\u9fff" for c in text) else ".")


@pytest.fixture(scope="session")
def fake_llm():
    """An OpenAI-compatible server on loopback answering rewrite prompts sensibly."""
    with FakeOpenAIServer(echo_rewrite) as server:
        yield server


@pytest.fixture(scope="session")
def demo_llm(fake_llm) -> list[str]:
    """Config overrides that point the demo's rewrite stage at `fake_llm` (the real SmolLM2 and
    vLLM paths have tests of their own; a 25 s model load per pipeline run would dominate the suite)."""
    return [
        "rewrite.llm.backend=openai",
        f"rewrite.llm.base_url={fake_llm.base_url}",
        "rewrite.llm.model=fake-model",
    ]


@pytest.fixture(scope="session")
def demo_config(demo_llm):
    from vtcurate.config import load_config

    return load_config(CONFIGS / "demo.yaml", ["partition_rows=8", *demo_llm])


@pytest.fixture(scope="session")
def local_run(demo_corpus, demo_config, tmp_path_factory) -> Path:
    """The demo corpus through every implemented stage with the local runner, and its report."""
    from vtcurate.workflow import run

    run_dir = tmp_path_factory.mktemp("runs") / "local"
    run(demo_config, str(demo_corpus / "manifest.jsonl"), run_dir, runner="local")
    return run_dir


# the model-free stages; split by PySceneDetect (no weights) cuts the demo's long videos
CPU_STAGES = ("stages=[ingest, split, langid, keyframes, shard]", "split.method=scenedetect")


@pytest.fixture(scope="session")
def cpu_run(demo_corpus, demo_llm, tmp_path_factory):
    """cpu_run(partition_rows): the demo corpus through the model-free stages with the local
    runner, the reference that runs with crashes, faults and lost nodes must reproduce byte for
    byte.  Tars are written per partition, so their bytes depend on partition_rows (a config key),
    never on the runner or its workers."""
    from vtcurate.config import load_config
    from vtcurate.pipeline.executor import run_pipeline

    runs: dict[int, Path] = {}

    def reference(partition_rows: int) -> Path:
        if partition_rows not in runs:
            run_dir = tmp_path_factory.mktemp("runs") / f"cpu-{partition_rows}"
            overrides = [*CPU_STAGES, "report.enabled=false", f"partition_rows={partition_rows}", *demo_llm]
            run_pipeline(load_config(CONFIGS / "demo.yaml", overrides), str(demo_corpus / "manifest.jsonl"),
                         run_dir, runner="local")  # fmt: skip
            runs[partition_rows] = run_dir
        return runs[partition_rows]

    return reference
