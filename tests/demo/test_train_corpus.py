"""The training demo corpus: planted kinds as asked, an answer key that matches the manifest and
tells the truth about the rules, a bilingual held-out set of distinct captions."""

import json
import re
from pathlib import Path

import pytest

from helpers import CONFIGS
from vtcurate.config import load_config
from vtcurate.demo.corpus import MOTIONS
from vtcurate.demo.train_corpus import (
    NOISE,
    REVERSED,
    Clip,
    generate_training_corpus,
    noise_counts,
    reversed_caption,
    reversed_captions,
)
from vtcurate.text.normalize import normalize_caption

HAN = re.compile(r"[\u4e00-\u9fff]")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("train-corpus")
    summary = generate_training_corpus(out, clips=60, heldout=20, seconds=1.0, noise={"foreign": 0.1})
    return {
        "summary": summary,
        "manifest": _jsonl(out / "corpus" / "manifest.jsonl"),
        "key": _jsonl(out / "corpus" / "answer_key.jsonl"),
        "heldout": _jsonl(out / "heldout" / "annotations.jsonl"),
        "dir": out,
    }


def test_counts_per_planted_kind(corpus):
    s, key = corpus["summary"], corpus["key"]
    assert len(corpus["manifest"]) == s["rows"] == 60
    got = {kind: sum(c["planted"] == kind for c in key) for kind in NOISE}
    assert got == s["planted"] == noise_counts(60, 0.4, 0.1, {"foreign": 0.1})
    assert got["mismatch"] == 24 and got["foreign"] == 6 and got["unreadable"] == 1  # shares, at least one
    assert s["clean"] == 60 - len(key) > 0
    assert json.loads((corpus["dir"] / "summary.json").read_text()) == s


def test_answer_key_rows_match_the_manifest(corpus):
    manifest, key = corpus["manifest"], corpus["key"]
    assert len({c["row"] for c in key}) == len(key)
    for case in key:
        assert manifest[case["row"] - 1]["id"] == case["id"]  # `row` counts manifest lines from 1
        assert (case["expect_stage"], case["expect_reason"]) == NOISE[case["planted"]][1:]
    assert len({r["id"] for r in manifest}) == len(manifest)
    for case in key:
        if case["planted"] == "reupload":  # a copy of a clean row, which the key does not list
            assert case["of"] in {r["id"] for r in manifest} - {c["id"] for c in key}
        if case["planted"] == "partly_wrong":
            assert case["wrong"] in Clip.__dataclass_fields__


def test_captions_are_bilingual_and_the_boilerplate_kinds_are_what_the_key_says(corpus):
    by_row = {c["row"]: c["planted"] for c in corpus["key"]}
    captions = [(by_row.get(n), r["caption"]) for n, r in enumerate(corpus["manifest"], 1)]
    described = [c for kind, c in captions if kind in (None, "mismatch", "partly_wrong")]
    assert any(HAN.search(c) for c in described) and any(not HAN.search(c) for c in described)
    for kind, caption in captions:
        if kind == "boilerplate_tags":  # langid's normalisation leaves nothing: empty_caption
            assert normalize_caption(caption) == ""
        elif kind == "boilerplate_cta":  # no rule removes calls to action
            assert normalize_caption(caption) == caption


@pytest.mark.slow
def test_langid_drops_foreign_captions_and_keeps_calls_to_action(corpus):
    from vtcurate.stages.langid import LangIdStage

    stage = LangIdStage(load_config(CONFIGS / "train-demo.yaml").langid)
    stage.setup()
    by_row = {c["row"]: c["planted"] for c in corpus["key"]}
    for n, row in enumerate(corpus["manifest"], 1):
        if by_row.get(n) in ("foreign", "boilerplate_cta", None):
            reason, _ = stage.decide(stage.resolve(stage.score(row["caption"])))
            want = "lang_not_allowed" if by_row.get(n) == "foreign" else None
            assert reason == want, row["caption"]


def test_heldout_captions_are_distinct_bilingual_and_reversible(corpus):
    held, s = corpus["heldout"], corpus["summary"]
    assert len(held) == s["heldout_clips"] == 20 and s["chance_R@1"] == pytest.approx(5.0)
    assert len({r["text"] for r in held}) == 20
    assert len({tuple(sorted(r["attributes"].items())) for r in held}) == 20
    assert {r["lang"] for r in held} == {"en", "zh"}
    assert all(bool(HAN.search(r["text"])) == (r["lang"] == "zh") for r in held)
    flipped = reversed_captions(corpus["dir"] / "heldout" / "annotations.jsonl")
    for row, text in zip(held, flipped):
        clip = Clip(**row["attributes"])
        other = REVERSED[clip.direction]
        if row["lang"] == "en":  # only the direction changed
            want = row["text"].replace(clip.direction, other)
            want = want.replace(clip.direction.capitalize(), other.capitalize())
        else:
            want = row["text"].replace(MOTIONS[clip.direction][0], MOTIONS[other][0])
        assert text == want != row["text"]
        back = {**row, "attributes": {**row["attributes"], "direction": other}}
        assert reversed_caption(back) == row["text"]


def test_sizes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown noise"):
        generate_training_corpus(tmp_path, clips=20, noise={"typo": 0.1})
    with pytest.raises(ValueError, match="no clean clip"):
        generate_training_corpus(tmp_path, clips=20, mismatch=0.9)
    assert not (tmp_path / "corpus").exists()


def test_cli_flags(tmp_path, capsys):
    from vtcurate.cli import main

    assert main(["train-demo-data", str(tmp_path), "--clips", "20", "--heldout", "4", "--seconds", "0.5",
                 "--mismatch", "0.2", "--noise", "static=0", "--noise", "blank=0.1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "20 rows" in out and "mismatch 4" in out and "blank 2" in out and "static" not in out
    assert "chance R@1 25.00%" in out
    assert main(["train-demo-data", str(tmp_path), "--noise", "nope=1"]) == 2
