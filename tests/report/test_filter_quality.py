"""Filter quality: ROC AUC against known values, precision and recall on hand-built stage rows."""

import itertools
import json
import random

import pyarrow as pa
import pytest

from vtcurate.pipeline.rundir import RunDir
from vtcurate.report.filter_quality import filter_quality, format_quality, roc_auc
from vtcurate.storage import write_parquet


@pytest.mark.parametrize(
    ("scores", "labels", "want"),
    [
        ([1, 2, 3, 4], [0, 0, 1, 1], 1.0),  # every positive above every negative
        ([1, 2, 3, 4], [1, 1, 0, 0], 0.0),
        ([5, 5, 5, 5], [0, 1, 0, 1], 0.5),  # all tied
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),  # 0.35 beats 0.1 only, 0.8 beats both: 3 of 4
        ([1, 2, 2, 3], [0, 1, 0, 1], 0.875),  # the tie at 2 counts half: 3.5 of 4
    ],
)
def test_roc_auc_known_values(scores, labels, want):
    assert roc_auc(scores, [bool(x) for x in labels]) == pytest.approx(want)


def test_roc_auc_is_the_share_of_pairs_ranked_right():
    rng = random.Random(3)
    scores = [rng.randint(0, 9) for _ in range(60)]  # many ties
    labels = [rng.random() < 0.4 for _ in range(60)]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    assert roc_auc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))
    assert roc_auc([1, 2], [True, True]) is None and roc_auc([], []) is None


# rows 1-4 planted, 5-8 clean.  langid drops 3 (foreign: right) and 6 (clean: wrong);
# clip_filter reads 1, 2, 4, 5, 7, 8 and drops (or would drop) 1 and 5
CLIP_FILTER, LANGID = ("clip_filter", "low_clip_score"), ("langid", "lang_not_allowed")
KEY = [
    {"row": row, "id": str(row), "planted": kind, "expect_stage": want[0], "expect_reason": want[1]}
    for row, kind, want in [
        (1, "mismatch", CLIP_FILTER), (2, "mismatch", CLIP_FILTER), (3, "foreign", LANGID),
        (4, "partly_wrong", CLIP_FILTER), (5, "stock noise", (None, None)),  # row 5 must survive
    ]
]  # fmt: skip
LANG = {1: ("en", 0.9), 2: ("zh", 0.8), 3: ("fr", 0.95), 4: ("en", 0.7), 5: ("en", 0.9), 6: ("en", 0.4),
        7: ("zh", 0.6), 8: ("en", 0.85)}  # fmt: skip
CLIP = {1: 0.1, 2: 0.4, 4: 0.3, 5: 0.2, 7: 0.5, 8: 0.6}


def _stage(rd: RunDir, name: str, rows: list[dict], rejected: dict[int, str], stats: dict | None = None):
    sdir = rd.stage(name)
    for side, keep in (("kept", False), ("rejected", True)):
        part = [{**r, "drop_reason": rejected.get(r["row"])} for r in rows if (r["row"] in rejected) == keep]
        if part:
            write_parquet(pa.Table.from_pylist(part), getattr(sdir, side) / "part-00000.parquet")
    sdir.stats.parent.mkdir(parents=True, exist_ok=True)
    sdir.stats.write_text(json.dumps({"stage": name, **(stats or {})}))


def _run(tmp_path, enforced: bool):
    rd = RunDir(tmp_path / f"run-{enforced}")
    rd.root.mkdir()
    rd.run_json.write_text(json.dumps({"config": {"langid": {"languages": ["en", "zh"]}}}))
    _stage(rd, "ingest", [{"row": i} for i in range(1, 9)], {})
    langid = [{"row": i, "lang": LANG[i][0], "lang_score": LANG[i][1]} for i in range(1, 9)]
    _stage(rd, "langid", langid, {3: "lang_not_allowed", 6: "caption_too_short"})
    clip = [{"row": i, "clip_score": s, "clip_pass": i not in (1, 5)} for i, s in CLIP.items()]
    _stage(rd, "clip_filter", clip, {1: "low_clip_score", 5: "low_clip_score"} if enforced else {},
           {"decisions_enforced": enforced})  # fmt: skip
    key = tmp_path / "answer_key.jsonl"
    key.write_text("".join(json.dumps(c) + "\n" for c in KEY))
    return filter_quality(rd.root, key)


@pytest.mark.parametrize("enforced", [True, False])
def test_precision_recall_and_auc_per_stage(tmp_path, enforced):
    q = _run(tmp_path, enforced)
    assert list(q["stages"]) == ["langid", "clip_filter"]  # ingest neither rejects nor scores
    langid = q["stages"]["langid"]
    counts = [langid[k] for k in ("input", "rejected", "rejected_expected", "rejected_clean")]
    assert counts == [8, 2, 1, 1]
    assert (langid["precision"], langid["recall"]) == (0.5, 1.0)
    assert langid["auc"] == {"lang_score": 1.0}  # French: no allowed-language confidence at all
    clip = q["stages"]["clip_filter"]
    assert clip["enforced"] is enforced  # not enforced: judged on clip_pass, what it would have dropped
    assert (clip["input"], clip["rejected"], clip["expected"]) == (6, 2, 3)
    assert clip["precision"] == 0.5 and clip["recall"] == pytest.approx(1 / 3)
    # planted {0.1, 0.4, 0.3} below clean {0.2, 0.5, 0.6} in 7 of 9 pairs (low scores are the planted side)
    assert clip["auc"]["clip_score"] == pytest.approx(7 / 9)
    assert clip["kinds"]["mismatch"] == {"expected_here": True, "n": 2, "rejected": 1,
                                         "auc": {"clip_score": pytest.approx(5 / 6)}}  # fmt: skip
    assert clip["kinds"]["partly_wrong"]["auc"]["clip_score"] == pytest.approx(2 / 3)
    assert "stock noise" not in clip["kinds"]  # a row the key says must survive counts as clean
    text = format_quality(q)
    assert ("recorded, not enforced" in text) is (not enforced)


def test_no_key_and_stages_not_run(tmp_path):
    assert filter_quality(tmp_path, None) is None
    assert filter_quality(tmp_path, tmp_path / "nope.jsonl") is None
    rd = RunDir(tmp_path / "run")
    rd.root.mkdir()
    _stage(rd, "ingest", [{"row": i} for i in range(1, 9)], {})
    key = tmp_path / "key.jsonl"
    key.write_text("".join(json.dumps(c) + "\n" for c in KEY))
    assert filter_quality(rd.root, key)["not_run"] == {"clip_filter": 3, "langid": 1}


def test_stats_filter_quality_cli(tmp_path, capsys):
    from vtcurate.cli import main

    _run(tmp_path, enforced=True)
    run, key = str(tmp_path / "run-True"), str(tmp_path / "answer_key.jsonl")
    assert main(["stats", run, "--filter-quality", "--answer-key", key]) == 0
    assert "clip_filter" in capsys.readouterr().out
    assert main(["stats", run, "--filter-quality", "--answer-key", key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"]["langid"]["precision"] == 0.5
    assert main(["stats", run, "--filter-quality"]) == 2  # run.json names no input: no key beside it
    assert "no answer key" in capsys.readouterr().err
