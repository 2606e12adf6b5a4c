import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CONFIGS
from vtcurate.cli import main
from vtcurate.config import FLOW

HEAVY = ("torch", "ray", "pyarrow", "av", "decord", "cv2", "webdataset", "open_clip", "apache_beam")


def test_help_imports_nothing_heavy():
    code = (
        "import sys, vtcurate.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "run" in out.stdout and "demo-data" in out.stdout


def test_stats_json_contract(local_run, capsys):
    assert main(["stats", str(local_run), "--json"]) == 0
    funnel = json.loads(capsys.readouterr().out)
    assert [f["stage"] for f in funnel] == list(FLOW)
    keys = {"stage", "rows_in", "kept", "rejected", "rejected_by_reason"}
    assert all(set(f) == keys | ({"videos_in"} if f["stage"] == "split" else set()) for f in funnel)
    split = next(f for f in funnel if f["stage"] == "split")  # rows in: videos; kept: clips
    assert split["videos_in"] == split["rows_in"] == funnel[0]["kept"] < split["kept"]
    assert funnel[0]["rejected_by_reason"]["missing_file"] == 1
    assert main(["stats", str(local_run)]) == 0
    table = capsys.readouterr().out
    assert "lang_not_allowed: 3" in table and "keyframes" in table


def test_stages_lists_config_keys(capsys):
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    assert "keyframes.num_frames = 8" in out and "clip_filter.aggregate" in out


def test_report_command(local_run, tmp_path, capsys):
    assert main(["report", str(local_run)]) == 0
    assert capsys.readouterr().out.strip().endswith("report/index.html")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_inspect(local_run, capsys, tmp_path):
    tar = next((local_run / "shards" / "train").glob("*.tar"))
    assert main(["inspect", str(tar), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "8 frames" in out
    (tmp_path / "x.tar").write_text("not a tar")
    assert main(["inspect", str(tmp_path / "x.tar")]) == 2
    assert "not a readable tar shard" in capsys.readouterr().err


def test_user_errors_exit_2_with_a_message(tmp_path, capsys, demo_corpus):
    manifest = str(demo_corpus / "manifest.jsonl")
    code = main(
        [
            "run",
            str(CONFIGS / "demo.yaml"),
            "--input",
            manifest,
            "--run-dir",
            str(tmp_path),
            "--set",
            "keyframes.nm_frames=4",
        ]
    )
    assert code == 2 and "unknown key 'keyframes.nm_frames'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4"}\n')
    code = main(
        [
            "run",
            str(CONFIGS / "demo.yaml"),
            "--input",
            str(bad),
            "--run-dir",
            str(tmp_path / "r"),
            "--runner",
            "local",
        ]
    )
    assert code == 2 and "missing required column(s) ['caption']" in capsys.readouterr().err
    assert not list((tmp_path / "r").glob("stages/*/kept/*"))


def test_demo_data_and_run_end_to_end(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--clips", "4"]) == 0
    code = main(
        [
            "run",
            str(CONFIGS / "demo.yaml"),
            "--input",
            str(tmp_path / "d" / "manifest.jsonl"),
            "--run-dir",
            str(tmp_path / "r"),
            "--runner",
            "local",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "samples in" in out and "ingest" in out


def _tiny_manifest(d: Path) -> Path:
    """Two rows (English, Chinese) of one 2 s demo clip."""
    import random

    from vtcurate.demo.corpus import ClipSpec, render, write_h264

    spec = ClipSpec("red", "circle", "from left to right")
    write_h264(d / "clip.mp4", render(spec, random.Random(0)))
    rows = [{"video": "clip.mp4", "caption": spec.caption(lang), "id": lang} for lang in ("en", "zh")]
    (d / "manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return d / "manifest.jsonl"


@pytest.mark.slow
def test_stages_outside_the_configs_flow_fail_before_any_work_naming_the_command(tmp_path, capsys):
    """--stages picks stages of the config's flow (each reads the stage before it there): a pick
    that skips one fails before anything is written, and names the command that runs the picked
    stages as a flow of their own, which works."""
    manifest, run_dir = _tiny_manifest(tmp_path), tmp_path / "run"
    common = ["--input", str(manifest), "--run-dir", str(run_dir), "--runner", "local"]
    argv = ["run", str(CONFIGS / "demo.yaml"), *common, "--set", "report.enabled=false"]
    assert main([*argv, "--stages", "ingest,langid,keyframes,shard"]) == 2
    err = capsys.readouterr().err
    assert "stage langid needs split" in err and "neither selected nor finished" in err
    assert not run_dir.exists()  # no run.json, no stages/: nothing ran
    command = err.strip().splitlines()[-1].strip()
    assert command == shlex.join(["vtcurate", *argv, "--set", "stages=[ingest,langid,keyframes,shard]"])
    assert main(shlex.split(command)[1:]) == 0
    done = {p.parent.name for p in (run_dir / "stages").glob("*/_SUCCESS")}
    assert done == {f"{FLOW.index(s):02d}_{s}" for s in ("ingest", "langid", "keyframes", "shard")}
    assert (run_dir / "shards" / "index.json").exists()


def test_train_without_shards_fails_before_any_work(tmp_path, capsys):
    manifest, run_dir = _tiny_manifest(tmp_path), tmp_path / "run"
    argv = ["run", str(CONFIGS / "demo.yaml"), "--input", str(manifest), "--run-dir", str(run_dir)]
    assert main([*argv, "--runner", "local", "--stages", "ingest,langid,train"]) == 2
    err = capsys.readouterr().err  # train is not among demo.yaml's stages: the flow that has it
    assert "--stages ['train'] are not in the config's stages" in err
    assert err.strip().endswith("--runner local --set 'stages=[ingest,langid,train]'")
    assert main([*argv, "--runner", "local", "--set", "stages=[ingest,langid,train]"]) == 2
    assert "stage train needs the shards of the shard stage" in capsys.readouterr().err
    assert not run_dir.exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A model.pt as `vtcurate train` writes it, of an untrained tiny VideoCLIP."""
    import torch

    from vtcurate.config import ClipModelSpec, VideoModelConfig
    from vtcurate.models.video_clip import VideoCLIP

    cfg = VideoModelConfig(clip=ClipModelSpec(name="vtc-tiny-vit"))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    torch.save({"model": VideoCLIP(cfg).state_dict(), "model_config": cfg.model_dump_json()}, path)
    return path


@pytest.mark.slow
def test_other_libraries_info_lines_only_with_verbose(tiny_checkpoint, tmp_path):
    """open_clip logs a dozen INFO lines through the root logger for each model it builds: `vtcurate
    eval` shows them with -v only; open_clip's warning (random weights) and vtcurate's own error
    either way."""
    shards = tmp_path / "shards"
    shards.mkdir()
    cmd = [sys.executable, "-m", "vtcurate.cli", "eval", str(tiny_checkpoint), "--shards", str(shards)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([*cmd, *v], env=env, stderr=subprocess.PIPE, text=True) for v in ([], ["-v"])]
    quiet, verbose = (p.communicate(timeout=300)[1] for p in runs)
    for err in (quiet, verbose):
        assert "WARNING root: No pretrained weights loaded for model 'vtc-tiny-vit'" in err, err
        assert "vtcurate: error:" in err and "no index.json" in err, err
    assert "INFO root" not in quiet, quiet
    assert "INFO root: Loaded built-in vtc-tiny-vit model config" in verbose, verbose


def test_log_levels_by_source():
    """vtcurate's INFO always, its DEBUG with -v; other libraries' warnings always, their INFO with
    -v; Ray's token-authentication warning (at every embedded cluster's start) with -v only."""
    code = (
        "import logging, sys\n"
        "from vtcurate.cli import RAY_TOKEN_AUTH_LOGGER, configure_logging\n"
        "configure_logging(int(sys.argv[1]))\n"
        "logging.getLogger('vtcurate.pipeline.executor').info('own info')\n"
        "logging.getLogger('vtcurate.video.frames').debug('own debug')\n"
        "logging.getLogger(RAY_TOKEN_AUTH_LOGGER).warning('token auth')\n"
        "logging.info('library info')\n"
        "logging.getLogger('urllib3').warning('library warning')\n"
    )
    said = ("own info", "own debug", "token auth", "library info", "library warning")
    for verbose, want in ((0, {"own info", "library warning"}), (1, set(said))):
        run = subprocess.run([sys.executable, "-c", code, str(verbose)], capture_output=True, text=True)
        assert {s for s in said if s in run.stderr} == want, run.stderr


def test_the_ray_token_auth_logger_is_the_one_that_warns():
    """RAY_TOKEN_AUTH_LOGGER names the Ray module whose own logger gives the warning."""
    from vtcurate.cli import RAY_TOKEN_AUTH_LOGGER

    ray_dir = Path(importlib.util.find_spec("ray").origin).parent
    source = ray_dir.joinpath(*RAY_TOKEN_AUTH_LOGGER.split(".")[1:]).with_suffix(".py").read_text()
    assert "logger = logging.getLogger(__name__)" in source
    assert 'logger.warning(\n        "Token authentication is enabled' in source
