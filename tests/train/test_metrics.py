"""Retrieval metrics against rankings computed by hand."""

import numpy as np
import pytest

from vtcurate.train.metrics import dual_softmax, ranks, recall_metrics, retrieval_report


def test_ranks_by_hand():
    sim = np.array(
        [
            [0.9, 0.1, 0.2],  # right answer first             -> rank 1
            [0.8, 0.5, 0.7],  # two wrong candidates above it  -> rank 3
            [0.1, 0.6, 0.4],  # one wrong candidate above it   -> rank 2
        ]
    )
    assert ranks(sim).tolist() == [1, 3, 2]
    m = recall_metrics(sim)
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["R@5"] == m["R@10"] == 100.0
    assert m["MdR"] == 2.0
    assert m["MnR"] == pytest.approx(2.0)


def test_ties_count_against_the_model():
    sim = np.full((4, 4), 0.5)  # a model that cannot tell anything apart
    assert ranks(sim).tolist() == [4, 4, 4, 4]
    assert recall_metrics(sim)["R@1"] == 0.0


def test_recall_at_k_thresholds():
    n = 12
    sim = np.zeros((n, n))
    for i in range(n):  # query i: its right answer is beaten by exactly i wrong ones
        wrong = [j for j in range(n) if j != i][:i]
        sim[i, wrong] = 1.0
        sim[i, i] = 0.5
    assert ranks(sim).tolist() == list(range(1, n + 1))
    m = recall_metrics(sim)
    assert m["R@1"] == pytest.approx(100 / 12)
    assert m["R@5"] == pytest.approx(500 / 12)
    assert m["R@10"] == pytest.approx(1000 / 12)
    assert m["MdR"] == 6.5
    assert m["MnR"] == 6.5


def test_non_square_matrix_is_refused():
    with pytest.raises(ValueError, match="square"):
        ranks(np.zeros((2, 3)))


def test_dual_softmax_fixes_a_hub_candidate():
    # video 0 is a "hub": both texts score it highest; text 1's own video (1) comes second.
    sim = np.array([[0.9, 0.1], [0.8, 0.7]])
    assert ranks(sim).tolist() == [1, 2]
    # column softmax at temperature 1 by hand: video 0 prefers text 0, video 1 prefers text 1
    rescored = dual_softmax(sim, temperature=1.0)
    col0 = np.exp([0.9, 0.8]) / np.exp([0.9, 0.8]).sum()
    col1 = np.exp([0.1, 0.7]) / np.exp([0.1, 0.7]).sum()
    expected = sim * np.stack([col0, col1], axis=1)
    np.testing.assert_allclose(rescored, expected)
    assert ranks(dual_softmax(sim, temperature=100.0)).tolist() == [1, 1]


def test_report_per_language_uses_that_language_only():
    # clips 0,1 English, 2,3 Chinese; text 1 scores Chinese video 2 (0.7) above its own video (0.6)
    text = np.eye(4)
    video = np.array([[1, 0, 0, 0], [0, 0.6, 0, 0.8], [0, 0.7, 0.714, 0], [0, 0, 0, 1.0]])
    report = retrieval_report(text, video, ["en", "en", "zh", "zh"])
    assert report["overall"]["n"] == 4 and report["en"]["n"] == 2
    assert report["overall"]["t2v"]["R@1"] == 75.0
    assert report["overall"]["t2v"]["MnR"] == pytest.approx(5 / 4)
    assert report["en"]["t2v"]["R@1"] == 100.0  # among English videos text 1 is right
    assert report["zh"]["chance_R@1"] == 50.0
