"""The ablation's direction scores: an order-blind model can only tie a clip with its reversal."""

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


def test_markdown_table_has_a_row_per_model():
    row = {
        "model": "mean", "shards": "pass2", "t2v_R@1": 10.0, "t2v_R@5": 40.0, "t2v_MdR": 7.0,
        "v2t_R@1": 8.0, "dir_text": 50.0, "dir_video": 50.0, "chance_R@1": 2.1, "train_s": 60.0,
    }  # fmt: skip
    text = markdown({"steps": 5, "curation": {"raw": {"kept": 3, "rows": 4}}, "rows": [row]})
    assert "| raw | 3 of 4 |" in text and "| mean | pass2 | 10.0 |" in text
