"""The ablation: direction scores (an order-blind model can only tie a clip with its reversal), the
statistics (mean and std over seeds, gains beyond two standard errors, the efficiency claim), shard
subsets, and a tiny run writing the docs/ablation.json contract and the README summary."""

import json
from pathlib import Path

import pytest

from helpers import CONFIGS
from vtcurate.config import load_config
from vtcurate.demo.ablation import evaluate_heldout, markdown
from vtcurate.demo.train_corpus import generate_training_corpus

CONFIG = CONFIGS / "train-demo.yaml"


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ablation")
    return Path(generate_training_corpus(out, clips=40, heldout=24, seconds=1.0)["heldout"])


@pytest.mark.parametrize("temporal", ["mean", "transformer"])
def test_direction_score_of_an_order_blind_model_is_chance(temporal, heldout, local_run, tmp_path):
    from vtcurate.train.loop import train

    overrides = ["train.steps=1", "train.batch_size=4", "train.num_workers=0", "train.eval_split=''"]
    cfg = load_config(CONFIG, [*overrides, f"train.model.temporal={temporal}"]).train
    train(cfg, local_run / "shards", tmp_path / temporal)
    result = evaluate_heldout(tmp_path / temporal / "model.pt", heldout)
    if temporal == "mean":
        assert result["dir_video"] == 50.0  # every clip ties with itself played backwards
    else:
        assert result["dir_video"] != 50.0  # an order-aware model prefers one playing direction
    assert result["retrieval"]["overall"]["n"] == 24


def _row(name: str, t2v: list[float], **extra) -> dict:
    from vtcurate.demo.ablation import summarise

    runs = [{"seed": i, "t2v_R@1": v, "t2v_R@5": 2 * v, "t2v_MdR": 100 - v, "v2t_R@1": v, "dir_text": 50.0,
             "dir_video": 50.0, "train_s": 10.0 * (i + 1)} for i, v in enumerate(t2v)]  # fmt: skip
    return summarise(name, "transformer", runs, rows=extra.pop("rows", 100), **extra)


def test_summarise_gives_mean_and_sample_std_over_seeds():
    row = _row("rules", [10.0, 12.0, 14.0])
    assert row["seeds"] == [0, 1, 2] and row["t2v_R@1_mean"] == 12.0 and row["t2v_R@1_std"] == 2.0
    assert row["train_s_mean"] == 20.0 and row["t2v_MdR_mean"] == 88.0


def test_a_gain_needs_two_standard_errors():
    from vtcurate.demo.ablation import compare

    raw = _row("raw", [4.0, 5.0, 6.0])  # std 1, so SE of a difference of two such means is sqrt(2/3)
    clear, noisy = _row("pass2", [9.0, 10.0, 11.0]), _row("pass2", [4.0, 6.0, 8.0])
    g = compare(clear, raw)
    assert g["diff"] == 5.0 and g["se"] == pytest.approx((2 / 3) ** 0.5) and g["gain"]
    assert not compare(noisy, raw)["gain"]  # +1 against 2 SE = 2.58
    assert compare(clear, raw, "t2v_MdR")["gain"]  # a lower median rank is the better one
    assert not compare(raw, clear, "t2v_MdR")["gain"]
    assert not compare(_row("x", [9.0]), _row("raw", [4.0]))["gain"]  # one seed gives no error bar


def test_claim_is_the_least_time_and_data_that_reach_raw():
    from vtcurate.demo.ablation import claim

    raw, best = _row("raw", [5.0, 5.0], rows=200), _row("pass2", [8.0, 8.0], rows=100)
    short = _row("pass2", [6.0, 6.0], rows=100, steps=75)  # train_s 15 against raw's 15: same seeds
    short["train_s_mean"] = 5.0
    small = _row("pass2", [4.0, 4.0], rows=25, data_fraction=0.25)  # does not reach raw
    assert claim(raw, best, [short, small]) == {"time_ratio": 5.0 / 15.0, "data_ratio": 0.5}
    assert claim(_row("raw", [9.0, 9.0]), best, [short, small]) == {"time_ratio": None, "data_ratio": None}


def test_subset_shards_lists_about_the_share_of_train_rows(local_run, tmp_path):
    from vtcurate.demo.ablation import subset_shards, train_rows
    from vtcurate.pipeline.shards import shard_paths, verify_shards

    shards = local_run / "shards"
    total = train_rows(shards)
    got = subset_shards(shards, 0.5, tmp_path)
    assert 0 < got < total and got == train_rows(tmp_path)
    assert verify_shards(tmp_path, "train") == len(shard_paths(tmp_path, "train"))  # the same bytes, found


@pytest.mark.slow
def test_a_tiny_ablation_writes_the_contract(tmp_path):
    from vtcurate.demo.ablation import CURATIONS, run

    generate_training_corpus(tmp_path / "data", clips=48, heldout=16, seconds=1.0)
    result = run(tmp_path, steps=2, seeds=(0, 1), runner="local", data_fractions=(0.5,))
    assert result["heldout_clips"] == 16
    rows = {(r["curation"], r["model"]): r for r in result["rows"]}
    assert {c for c, m in rows if m == "transformer"} == set(CURATIONS)
    best = {m for c, m in rows if c == result["best_curation"]}
    assert best == {"transformer", "mean", "transformer + ACG"}
    for row in rows.values():
        assert row["seeds"] == [0, 1] and row["train_rows"] > 0 and row["train_s_mean"] > 0
        for metric in ("t2v_R@1", "t2v_R@5", "t2v_MdR", "v2t_R@1"):
            assert {f"{metric}_mean", f"{metric}_std"} <= row.keys()
    assert rows[("raw", "transformer")]["train_rows"] > rows[("pass2", "transformer")]["train_rows"]
    assert [q["curation"] for q in result["filter_quality"]] == ["rules", "pass2", "pass3"]
    assert all({"auc_mismatched", "precision", "recall"} <= q.keys() for q in result["filter_quality"])
    assert len(result["efficiency"]) == 3 and {"time_ratio", "data_ratio"} == result["claim"].keys()
    # seed 0 of the bootstrap curations is the bootstrap's own training, not a second one
    assert not (tmp_path / "models" / "rules-transformer-s0").exists()
    assert (tmp_path / "models" / "rules-transformer-s1" / "model.pt").is_file()
    text = markdown(result)
    assert "| raw | transformer |" in text and "Against raw" in text

    from vtcurate.config_doc import included
    from vtcurate.demo.ablation import SUMMARY, write

    readme = tmp_path / "README.md"
    readme.write_text(f"a\n<!-- docs/{SUMMARY} -->\nold\n<!-- end docs/{SUMMARY} -->\nb\n")
    write(result, tmp_path / "docs", readme)
    saved = json.loads((tmp_path / "docs" / "ablation.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert included(readme.read_text(), f"docs/{SUMMARY}") == (tmp_path / "docs" / SUMMARY).read_text()
    assert "held-out t2v R@1 raw" in (tmp_path / "docs" / SUMMARY).read_text()
