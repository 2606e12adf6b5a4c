"""The training loop on the demo run's shards: checkpoints, resume after SIGKILL, DDP, the `train`
stage, evaluation from shards and from a video folder, and the trained backbone as a scorer."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS, linear_output_dtypes
from vtcurate.config import ClipModelSpec, load_config

TINY = [
    "train.batch_size=4",
    "train.num_workers=0",
    "train.shuffle_buffer=8",
    "train.log_every=1",
    "train.warmup_steps=1",
]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vtcurate.cli", *args]


def _train_cmd(shards: Path, out: Path, *overrides: str) -> list[str]:
    sets = [x for o in [*TINY, *overrides] for x in ("--set", o)]
    return _cli("train", str(CONFIGS / "train-demo.yaml"), "--shards", str(shards), "--out", str(out), *sets)


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(local_run, tmp_path_factory) -> Path:
    """A 3-step training run on the demo shards (in process)."""
    from vtcurate.train.loop import train

    cfg = load_config(CONFIGS / "train-demo.yaml", [*TINY, "train.steps=3", "train.model.acg=true"]).train
    out = tmp_path_factory.mktemp("train") / "out"
    train(cfg, local_run / "shards", out)
    return out


def test_training_writes_metrics_checkpoints_and_eval(trained):
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert all(x["samples_per_s"] > 0 and "aux_loss" in x for x in lines)
    info = json.loads((trained / "train.json").read_text())
    assert info["steps_run"] == 3 and info["resumed_from_step"] == 0
    assert info["backbone_init"]["random_weights"] is True
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["step-000003.pt"]
    ev = json.loads((trained / "eval" / "eval.json").read_text())
    assert ev["clips"] == ev["overall"]["n"] > 0
    assert {"en", "zh"} <= set(ev) and 0 <= ev["overall"]["t2v"]["R@1"] <= 100


def test_rerun_of_a_finished_training_is_skipped(trained, local_run):
    from vtcurate.train.loop import train

    cfg = load_config(CONFIGS / "train-demo.yaml", [*TINY, "train.steps=3", "train.model.acg=true"]).train
    before = (trained / "model.pt").stat().st_mtime_ns
    assert train(cfg, local_run / "shards", trained)["steps_run"] == 3
    assert (trained / "model.pt").stat().st_mtime_ns == before


def test_trained_backbone_is_a_clip_filter_scorer(trained):
    from vtcurate.models.clip import ClipModel, weights_info
    from vtcurate.train.loop import load_trained

    spec = ClipModelSpec(name="vtc-tiny-vit", pretrained=str(trained / "clip_backbone.pt"))
    assert weights_info(spec)["random_weights"] is False
    scorer = ClipModel(spec)
    video_model = load_trained(trained / "model.pt")
    for name, tensor in video_model.clip.state_dict().items():
        torch.testing.assert_close(scorer.model.state_dict()[name], tensor)
    random = ClipModel(ClipModelSpec(name="vtc-tiny-vit", seed=0))
    assert not torch.equal(random.model.visual.proj, scorer.model.visual.proj)


def test_second_curation_pass_filters_with_the_trained_scorer(trained, local_run, demo_corpus, tmp_path):
    from vtcurate.pipeline.executor import run_pipeline

    config = load_config(
        CONFIGS / "demo.yaml",
        [
            "partition_rows=8",
            "report.enabled=false",
            "stages=[ingest,langid,keyframes,clip_filter]",
            f"clip_filter.models.*={{name: vtc-tiny-vit, pretrained: '{trained / 'clip_backbone.pt'}'}}",
            "clip_filter.thresholds={'*': {mode: top_fraction, value: 0.5}}",
        ],
    )
    stats = run_pipeline(config, str(demo_corpus / "manifest.jsonl"), tmp_path / "pass2", runner="local")
    clip = stats[-1]
    assert clip["stage"] == "clip_filter" and clip["random_weights"] is False
    assert clip["decisions_enforced"] is True and clip["rejected"] > 0


def test_eval_cli_on_a_video_folder(trained, tmp_path, capsys):
    from vtcurate.cli import main
    from vtcurate.demo.train_corpus import generate_training_corpus

    corpus = generate_training_corpus(tmp_path / "td", clips=40, heldout=24, seconds=1.0)
    out, heldout = tmp_path / "eval", Path(corpus["heldout"])
    args = ["--annotations", str(heldout / "annotations.jsonl"), "--videos", str(heldout / "videos")]
    assert main(["eval", str(trained / "model.pt"), *args, "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["clips"] == 24 and report["en"]["n"] == report["zh"]["n"] == 12
    assert "t2v_dsl" in capsys.readouterr().out


def test_eval_refuses_bad_arguments(trained, tmp_path, capsys):
    from vtcurate.cli import main

    assert main(["eval", str(trained / "model.pt")]) == 2
    assert "--shards, or --annotations" in capsys.readouterr().err
    bad = tmp_path / "a.jsonl"
    bad.write_text('{"clip_id": "x"}\n')
    assert (
        main(["eval", str(trained / "model.pt"), "--annotations", str(bad), "--videos", str(tmp_path)]) == 2
    )
    assert "a.jsonl:1" in capsys.readouterr().err


def test_training_threads_leave_the_loader_workers_their_cpus(monkeypatch):
    from vtcurate.train.loop import training_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    cfg = load_config(CONFIGS / "train-demo.yaml", ["train.num_workers=2"]).train
    assert training_threads(cfg, world=1) == 6
    assert training_threads(cfg, world=4) == 1 and training_threads(cfg, world=8) == 1
    assert training_threads(cfg.model_copy(update={"threads": 3}), world=1) == 3


def test_resume_after_sigkill_continues_from_the_last_checkpoint(local_run, tmp_path):
    out = tmp_path / "out"
    cmd = _train_cmd(
        local_run / "shards", out, "train.steps=8", "train.checkpoint_every=2", "train.eval_split=''"
    )
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((out / "checkpoints").glob("step-00000[4-6].pt")) and proc.poll() is None:
        if time.time() > deadline:  # a hang guard, not a timing claim
            pytest.fail("training wrote no checkpoint in 300 s")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"training ended before it was killed: {proc.stderr.read()[-2000:]}"
    )
    killed_at = max(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.pt"))
    assert not (out / "model.pt").exists()

    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    info = json.loads((out / "train.json").read_text())
    assert info["resumed_from_step"] == killed_at >= 4
    assert info["steps_run"] == 8 - killed_at
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 8 and set(range(1, 9)) <= set(steps)
    assert "resuming from" in rerun.stderr


def test_ddp_on_two_cpu_processes(local_run, tmp_path):
    out = tmp_path / "ddp"
    cmd = _train_cmd(local_run / "shards", out, "train.steps=2", "train.eval_split=''")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]
    run = subprocess.run(
        [*torchrun, "-m", "vtcurate.cli", *cmd[3:]], env=_env(), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((out / "train.json").read_text())
    assert info["world_size"] == 2 and info["steps_run"] == 2
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]  # rank 0 alone writes metrics


def test_train_stage_follows_the_flow(local_run, demo_config, demo_corpus, tmp_path):
    import shutil

    from vtcurate.workflow import run

    run_dir = tmp_path / "run"
    shutil.copytree(local_run, run_dir)
    overrides = {
        "stages": [*demo_config.stages, "train"],
        "report": demo_config.report.model_copy(update={"enabled": False}),
    }
    config = demo_config.model_copy(update=overrides)
    config.train = load_config(CONFIGS / "train-demo.yaml", [*TINY, "train.steps=2"]).train
    stats = run(config, str(demo_corpus / "manifest.jsonl"), run_dir, runner="local")
    assert [s["stage"] for s in stats] == list(demo_config.stages)  # finished earlier: reused
    info = json.loads((run_dir / "run.json").read_text())["train"]
    assert info["steps_run"] == 2 and (run_dir / "train" / "clip_backbone.pt").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_gpu_training_in_bf16(local_run, tmp_path):
    from vtcurate.train.loop import train

    cfg = load_config(
        CONFIGS / "train-demo.yaml",
        ["train.steps=4", "train.batch_size=16", "train.device=cuda", "train.log_every=1"],
    ).train
    with linear_output_dtypes() as seen:
        info = train(cfg, local_run / "shards", tmp_path / "gpu")
    assert torch.bfloat16 in seen, seen  # autocast ran: the layers computed in bf16
    assert info["device"].startswith("cuda") and info["steps_run"] == 4
    lines = [json.loads(x) for x in (tmp_path / "gpu" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lines)
