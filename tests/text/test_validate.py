"""Checks on generated captions: cleaning, and each rejection rule by its own code."""

import pytest

from vtcurate.models.langid import LanguageIdentifier
from vtcurate.text.validate import OutputRules, clean_output, grounding, has_repetition, output_problem


@pytest.fixture(scope="module")
def check():
    lid, rules = LanguageIdentifier(), OutputRules()

    def run(output: str, source: str, lang: str) -> str | None:
        return output_problem(clean_output(output), source, lang, lid, rules)

    return run


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ('"A dog runs on the grass."', "A dog runs on the grass."),
        ("'A dog runs.'", "A dog runs."),
        ("“一只狗在草地上跑”", "一只狗在草地上跑"),
        ("「一只狗」", "一只狗"),
        ("Caption: A dog runs.", "A dog runs."),
        ("caption:a dog", "a dog"),
        ("Rewritten caption: a dog runs", "a dog runs"),
        ("描述：一只狗在跑", "一只狗在跑"),
        ('Output: "A dog runs."', "A dog runs."),  # label, then quotes
        ('  Caption:  "a dog\n   runs\tfast"  ', "a dog runs fast"),  # line breaks and runs of spaces
        ("a dog runs", "a dog runs"),  # nothing to undo
        ('"a dog runs', '"a dog runs'),  # an unbalanced quote is content, not wrapping
    ],
)
def test_clean_output(raw, clean):
    assert clean_output(raw) == clean


def test_clean_output_of_nothing():
    assert clean_output(None) == ""
    assert clean_output("   \n ") == ""


def test_clean_output_markdown_bold_label():
    assert clean_output("**Rewritten caption:** A dog runs.") == "A dog runs."


EN_SRC = "a dog runs on the grass"
ZH_SRC = "一只狗在草地上跑"


@pytest.mark.parametrize(
    ("output", "source", "lang", "code"),
    [
        ("", EN_SRC, "en", "empty"),
        ('  ""  ', EN_SRC, "en", "empty"),
        ("Caption:", EN_SRC, "en", "empty"),
        ("Sure, here is the rewritten caption: a dog runs on the grass.", EN_SRC, "en", "preamble"),
        ("Here is a rewritten caption: a dog runs on the grass.", EN_SRC, "en", "preamble"),
        ("As an AI language model, I cannot see the video.", EN_SRC, "en", "preamble"),
        ("I'm sorry, but I can't help with that.", EN_SRC, "en", "preamble"),
        ("好的，以下是改写后的描述：一只狗在草地上跑。", ZH_SRC, "zh", "preamble"),
        ("作为一个人工智能，我无法观看视频。", ZH_SRC, "zh", "preamble"),
        ("当然！一只狗在草地上跑。", ZH_SRC, "zh", "preamble"),
        ("A dog runs on the grass, see https://example.com/dog", EN_SRC, "en", "url"),
        ("Contact someone@example.com for the footage of a dog on grass.", EN_SRC, "en", "url"),
        ("一只狗在草地上跑，详见 www.example.com", ZH_SRC, "zh", "url"),
        ("a dog runs runs runs runs on the grass", EN_SRC, "en", "repetition"),  # word loop
        (
            "a dog runs on the grass a dog runs on the grass a dog runs on the grass",
            "a dog runs on the grass in the park near the lake with a big red ball",
            "en",
            "repetition",
        ),  # n-gram loop
        ("狗狗狗狗在草地上跑", ZH_SRC, "zh", "repetition"),  # character loop
        (
            "一只狗在跑一只狗在跑一只狗在跑",
            "一只狗在草地上跑来跑去追着一个球玩",
            "zh",
            "repetition",
        ),  # n-gram loop
        ("A dog runs on the grass in a park.", "一只狗在公园的草地上跑", "zh", "wrong_language"),
        ("一只狗在公园的草地上跑。", "a dog runs on the grass in a park", "en", "wrong_language"),
        (
            "A brown dog runs.",
            "a brown dog runs quickly across the green grass of a sunny park while its owner sits on a bench",
            "en",
            "too_short",
        ),
        ("狗。", "一只棕色的小狗在阳光明媚的公园草地上快速奔跑", "zh", "too_short"),
        (
            "A brown dog runs quickly across the green grass in a sunny park while its owner watches from a "
            "wooden bench under a tall oak tree, and children play with a red ball nearby and birds fly "
            "overhead in the blue sky above the trees.",
            "a brown dog runs in a park",
            "en",
            "too_long",
        ),
        (
            "一只棕色的小狗在阳光明媚的公园草地上快速奔跑，它的主人坐在一棵高大橡树下的木凳上看着，"
            "孩子们在附近玩红球，鸟儿在蓝天上飞翔。",
            "小狗在公园跑",
            "zh",
            "too_long",
        ),
        (
            "A Green Square Movement (GMM) - a movement for environmental sustainability and social justice.",
            "a green square moves from top to bottom",
            "en",
            "ungrounded",
        ),
        ("一只狗在草地上跑，它的主人在旁边看着。", "小猫在沙发上睡觉", "zh", "ungrounded"),
    ],
)
def test_output_problem_rejects(check, output, source, lang, code):
    assert check(output, source, lang) == code


@pytest.mark.parametrize(
    ("output", "source", "lang"),
    [
        (
            "A blue circle moves from left to right across the screen.",
            "blue circle moving left to right stock footage 4k",
            "en",
        ),
        (
            "A woman slices onions on a cutting board in a kitchen.",
            "woman slicing onions cutting board kitchen closeup",
            "en",
        ),
        # "sure" and "here" inside the text are not a preamble
        (
            "A man makes sure that the brown dog runs across the park here.",
            "a brown dog runs across the park while a man watches",
            "en",
        ),
        ('Caption: "A dog runs on the green grass."', "a dog running on green grass", "en"),
        ("一只小狗在草地上快乐地奔跑。", "小狗在草地上跑来跑去", "zh"),
        ("一名男子正在厨房里做饭。", "一个男人在厨房做饭", "zh"),
        ("“一只狗在公园的草地上奔跑。”", "一只狗在公园草地上跑", "zh"),
    ],
)
def test_output_problem_accepts_good_rewrites(check, output, source, lang):
    assert check(output, source, lang) is None


def test_rules_are_configurable():
    lid = LanguageIdentifier()
    text = "A brown dog runs."  # 4 words for 18: under 0.3 of the source, over 0.2
    source = "a brown dog runs quickly across the green grass of a sunny park while its owner sits on a bench"
    assert output_problem(text, source, "en", lid, OutputRules()) == "too_short"
    assert output_problem(text, source, "en", lid, OutputRules(min_length_ratio=0.2)) is None
    invented = "A green square movement for sustainability and justice."
    square = "a green square moves from top to bottom"
    assert output_problem(invented, square, "en", lid, OutputRules()) == "ungrounded"
    assert output_problem(invented, square, "en", lid, OutputRules(min_grounding=0.0)) is None


def test_grounding_and_repetition_units():
    # stemming: "moves"/"moving" and "move" are the same content word; stop words do not count
    assert grounding("The circle moves.", "a circle moving", "en") == 1.0
    assert grounding("A red square.", "a red circle", "en") == pytest.approx(0.5)
    assert grounding("the of and", "something else", "en") == 1.0  # no content words
    assert grounding("一只猫", "一只狗", "zh") == pytest.approx(2 / 3)
    assert not has_repetition("a dog runs and a cat runs", "en")
    assert has_repetition("go go go go", "en")
    assert not has_repetition("go go go", "en")  # a run of three is allowed
