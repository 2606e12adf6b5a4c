"""Shared fixtures: the real test data beside the project, and one demo corpus + run per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import CONFIGS, SHARED_DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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


@pytest.fixture(scope="session")
def demo_config():
    from vtcurate.config import load_config

    return load_config(CONFIGS / "demo.yaml", ["partition_rows=8"])


@pytest.fixture(scope="session")
def local_run(demo_corpus, demo_config, tmp_path_factory) -> Path:
    """The demo corpus through every implemented stage with the local runner."""
    from vtcurate.pipeline.executor import run_pipeline

    run_dir = tmp_path_factory.mktemp("runs") / "local"
    run_pipeline(demo_config, str(demo_corpus / "manifest.jsonl"), run_dir, runner="local")
    return run_dir
