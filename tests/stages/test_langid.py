import json

import pyarrow as pa
import pytest

from vtcurate.config import LangIdConfig
from vtcurate.stages.langid import LangIdStage

HUMAN_FILES = [
    "en_msrvtt_1kA_test_part1.jsonl",
    "en_vatex_sample.jsonl",
    "zh_msvd_cn_part1.jsonl",
    "bi_chinaopen1k_manual_part1.jsonl",
]


@pytest.fixture(scope="module")
def stage():
    s = LangIdStage(LangIdConfig())
    s.setup()
    return s


def _run(stage, captions):
    table = pa.table({"clip_id": [str(i) for i in range(len(captions))], "caption": captions})
    return stage(table).to_pylist()


@pytest.mark.parametrize("name", HUMAN_FILES)
def test_accuracy_on_human_captions(stage, data_dir, name):
    rows = [json.loads(line) for line in (data_dir / "captions" / name).read_text("utf-8").splitlines()]
    out = _run(stage, [r["caption"] for r in rows])
    correct = sum(o["lang"] == r["lang"] for o, r in zip(out, rows))
    kept_correct = sum(o["lang"] == r["lang"] and o["drop_reason"] is None for o, r in zip(out, rows))
    print(f"{name}: accuracy {correct / len(rows):.4f}, kept as it {kept_correct / len(rows):.4f}")
    assert correct / len(rows) >= 0.98
    assert kept_correct / len(rows) >= 0.95


def test_noisy_captions_keep_their_language(stage, data_dir):
    for name in ("noisy_en_webvid_sample.jsonl", "noisy_zh_subtitles_srt.jsonl"):
        rows = [json.loads(line) for line in (data_dir / "captions" / name).read_text("utf-8").splitlines()]
        out = _run(stage, [r["caption"] for r in rows])
        assert sum(o["lang"] == r["lang"] for o, r in zip(out, rows)) / len(rows) >= 0.9


def test_decisions_and_reasons(stage):
    out = _run(
        stage,
        [
            "a man is cooking pasta in a kitchen",
            "一男一女在吃饭。",  # fastText alone says ja/wuu: the script rule keeps it
            "这个视频展示了 how to cook pasta 的步骤",  # code-switched: Chinese
            "一個男人在廚房裡做飯",  # Traditional: converted
            "un homme cuisine des pâtes dans la cuisine",
            "男の人が台所で料理をしている",
            "мужчина готовит пасту на кухне",
            "🐶🔥 https://example.com",
            "小狗",  # 2 characters < min_length 4
            "word " * 200,
        ],
    )
    langs = [(o["lang"], o["drop_reason"]) for o in out]
    assert langs[0] == ("en", None)
    assert langs[1] == ("zh", None) and out[1]["lang_rule"] == "script"
    assert langs[2] == ("zh", None)
    assert langs[3] == ("zh", None) and out[3]["caption"] == "一个男人在厨房里做饭"
    assert out[3]["caption_raw"] == "一個男人在廚房裡做飯"
    assert [r for _, r in langs[4:7]] == ["lang_not_allowed"] * 3
    assert [lang for lang, _ in langs[4:7]] == ["fr", "ja", "ru"]
    assert langs[7][1] == "empty_caption"
    assert langs[8][1] == "caption_too_short"
    assert langs[9][1] == "caption_too_long"
    for o in out:
        assert (o["drop_reason"] is None) == (o["drop_detail"] is None)


def test_english_with_a_chinese_name_stays_english(stage):
    (out,) = _run(stage, ["my trip to Beijing 北京 and the Great Wall of China"])
    assert out["lang"] == "en" and out["drop_reason"] is None


def test_threshold_comes_from_config():
    strict = LangIdStage(LangIdConfig(min_confidence={"en": 0.999, "zh": 0.5}))
    (out,) = _run(strict, ["a man is cooking"])
    assert out["drop_reason"] == "low_lang_confidence"


def test_provenance_names_the_bundled_model(stage):
    prov = stage.provenance()["langid"]
    assert prov["file"].endswith("lid.176.ftz") and len(prov["sha256"]) == 64
    assert prov["random_weights"] is False
