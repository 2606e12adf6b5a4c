"""The prepared GPU check (`make gpu-check`) runs end to end: its CPU half here, small, so that the
one try on a lent GPU machine does not fail on something a CPU could have shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_writes_its_figures_and_test_outcomes(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "GPU_CHECK_NO_INSTALL": "1",
           "GPU_CHECK_ARGS": "--device cpu --quick"}  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["errors"] == {} and result["machine"]["cpus"]
    names = [r["name"] for r in result["rows"]]
    assert any(n.startswith("CLIP vtc-tiny-vit image embedding") for n in names)
    train = next(r for r in result["rows"] if r["name"].startswith("VideoCLIP"))
    assert train["value"] > 0 and train["extra"]["linear_output_dtypes_bf16_run"] == ["bfloat16"]
    assert any(n.startswith("TransNetV2") for n in names)
    tests = {t["test"].rsplit("::", 1)[1]: t for t in result["tests"]}
    assert "test_clip_on_cuda_uses_bf16_and_matches_cpu" in tests  # collected, and here: skipped, saying why
    assert all(t["outcome"] == "skipped" and "CUDA" in t["detail"] for t in tests.values()), tests
