"""vtcurate installed from a wheel, run outside the checkout: everything it reads at run time
(prompts, bundled model configs, report templates) is package data, not a file of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_runs_a_flow_outside_the_checkout(tmp_path, demo_corpus, fake_llm):
    # built from a copy of the sources: a build/ folder left in the checkout would lend the wheel
    # files that package_data no longer names, and git (include_package_data) would add any file
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(".*", "build", "runs", "*.egg-info", "__pycache__", "tests", "bench",
                                  "docs", "*_data")  # fmt: skip
    shutil.copytree(ROOT, src, ignore=skip)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, timeout=600)  # fmt: skip
    (wheel,) = wheels.glob("vtcurate-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    # vtcurate from the wheel; its dependencies from the project's environment (not its editable
    # vtcurate: a path in a .pth file does not run the .pth files found there)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"  # a config of one's own, naming no prompt file
    elsewhere.mkdir()
    llm = f"{{backend: openai, base_url: '{fake_llm.base_url}', model: fake}}"
    (elsewhere / "mine.yaml").write_text(
        "name: mine\n"
        "stages: [ingest, langid, keyframes, rewrite, aux_caption, shard]\n"
        f"rewrite: {{languages: [en], llm: {llm}}}\n"
    )
    rows = [json.loads(line) for line in (demo_corpus / "manifest.jsonl").read_text("utf-8").splitlines()[:8]]
    manifest = elsewhere / "manifest.jsonl"
    manifest.write_text(
        "".join(json.dumps({**r, "video": str(demo_corpus / r["video"])}) + "\n" for r in rows)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    where = subprocess.check_output([str(python), "-c", "import vtcurate; print(vtcurate.__file__)"],
                                    cwd=elsewhere, env=env, text=True)  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv), where
    done = subprocess.run(
        [str(venv / "bin" / "vtcurate"), "run", "mine.yaml", "--input", "manifest.jsonl", "--run-dir", "run",
         "--runner", "local"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    index = json.loads((elsewhere / "run" / "shards" / "index.json").read_text())
    assert index["samples"] > 0
    stats = {json.loads(p.read_text())["stage"]: json.loads(p.read_text())
             for p in (elsewhere / "run" / "stages").glob("*/stats.json")}  # fmt: skip
    assert stats["rewrite"]["kept"] > 0 and (elsewhere / "run" / "report" / "index.html").is_file()
    rewrites = [
        r for r in fake_llm.prompts() if "Caption:" in r
    ]  # the bundled English prompt reached the LLM
    assert rewrites, "no rewrite prompt from vtcurate's own prompt file"
