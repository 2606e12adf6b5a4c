"""`vtcurate bootstrap` on a tiny training corpus: pass 2 curates with pass 1's trained backbone as
its enforced clip_filter scorer, every pass is evaluated on the held-out set, and a rerun resumes."""

import json
from pathlib import Path

import pytest

from helpers import CONFIGS
from vtcurate.config import load_config

TINY = [
    "partition_rows=32",
    "train.steps=2",
    "train.batch_size=4",
    "train.num_workers=0",
    "train.shuffle_buffer=8",
    "train.warmup_steps=1",
    "train.eval_split=''",
    "report.enabled=false",
    "bootstrap.passes=2",
    "bootstrap.threshold={mode: top_fraction, value: 0.5}",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    from vtcurate.demo.train_corpus import generate_training_corpus

    return generate_training_corpus(tmp_path_factory.mktemp("tdemo"), clips=48, heldout=16, seconds=1.0)


@pytest.fixture(scope="module")
def booted(corpus, tmp_path_factory) -> tuple[Path, dict]:
    from vtcurate.bootstrap import bootstrap

    config = load_config(CONFIGS / "train-demo.yaml", TINY)
    heldout = Path(corpus["heldout"])
    work = tmp_path_factory.mktemp("boot")
    result = bootstrap(config, corpus["manifest"], work, (heldout / "annotations.jsonl", heldout / "videos"),
                       runner="local")  # fmt: skip
    return work, result


def _clip_filter_stats(run_dir: Path) -> dict:
    (path,) = (run_dir / "stages").glob("*_clip_filter/stats.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_pass_two_is_scored_by_pass_one_model(booted):
    work, result = booted
    assert [r["pass"] for r in result["passes"]] == [1, 2]
    info = json.loads((work / "pass2" / "run.json").read_text())
    scorer = info["config"]["clip_filter"]["models"]["*"]["pretrained"]
    assert scorer == str(work / "pass1" / "train" / "clip_backbone.pt")
    assert info["config"]["aux_caption"]["clip"]["pretrained"] == scorer
    clip = _clip_filter_stats(work / "pass2")
    assert clip["random_weights"] is False and clip["decisions_enforced"] is True
    assert clip["rejected"] > 0  # top half kept: the trained scorer drops the rest
    first = _clip_filter_stats(work / "pass1")
    assert first["random_weights"] is True and first["decisions_enforced"] is False


@pytest.mark.slow
def test_every_pass_is_evaluated_and_tabled(booted, corpus):
    work, result = booted
    for row in result["passes"]:
        assert row["heldout"]["clips"] == corpus["heldout_clips"]
        assert row["kept"] <= row["rows_in"] == corpus["rows"]
    assert result["passes"][1]["kept"] < result["passes"][0]["kept"]
    from vtcurate.bootstrap import pass_quality

    quality = [pass_quality(r["filter_quality"]) for r in result["passes"]]  # the answer key beside the input
    assert [q["enforced"] for q in quality] == [False, True]
    assert all(0 <= q["auc_mismatched"] <= 1 and q["precision"] is not None for q in quality)
    saved = json.loads((work / "bootstrap.json").read_text())
    assert [r["kept"] for r in saved["passes"]] == [r["kept"] for r in result["passes"]]
    table = (work / "bootstrap.md").read_text()
    assert "| 2 | pass 1 model |" in table and "| 1 | config |" in table


@pytest.mark.slow
def test_a_rerun_resumes_without_retraining(booted, corpus, capsys):
    from vtcurate.cli import main

    work, result = booted
    heldout = Path(corpus["heldout"])
    args = ["bootstrap", str(CONFIGS / "train-demo.yaml"), "--input", corpus["manifest"],
            "--work-dir", str(work), "--runner", "local", "--annotations", str(heldout / "annotations.jsonl"),
            "--videos", str(heldout / "videos"), *[x for o in TINY for x in ("--set", o)]]  # fmt: skip
    models = [work / f"pass{n}" / "train" / "model.pt" for n in (1, 2)]
    written = [p.stat().st_mtime_ns for p in models]
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in models] == written  # finished trainings are not redone
    assert "| 2 | pass 1 model |" in capsys.readouterr().out
    # the bootstrap section is not the curation's: a rerun with fewer passes resumes pass 1
    assert main([*args, "--passes", "1"]) == 0
    assert models[0].stat().st_mtime_ns == written[0]


def test_bootstrap_refuses_a_flow_without_training(tmp_path):
    from vtcurate.bootstrap import bootstrap
    from vtcurate.errors import UserError

    config = load_config(CONFIGS / "train-demo.yaml", ["stages=[ingest,keyframes,clip_filter,shard]"])
    with pytest.raises(UserError, match=r"missing \['train'\]"):
        bootstrap(config, "unused.jsonl", tmp_path)
    assert not any(tmp_path.iterdir())
