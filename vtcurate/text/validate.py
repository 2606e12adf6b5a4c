"""Checks on generated captions (rewrite, aux_caption): an output that fails is never used.

`clean_output` undoes harmless formatting (wrapping quotes, a leading label such as "Caption:",
line breaks); `output_problem` names the first rule the cleaned text breaks, or None:
- empty          nothing left
- preamble       chatty lead-in or refusal ("Sure, here is…", "As an AI…", "好的，以下是…")
- url            a URL or e-mail address (the prompt forbids them; they are never visual)
- repetition     a loop: a word run repeated, or an n-gram recurring many times
- wrong_language lid.176 (with the langid stage's Han-share rule) disagrees with the source language
- too_short / too_long   length outside [min_ratio, max_ratio] × the source's length
- ungrounded     under `min_grounding` of the output's content words (English; crudely stemmed) or
                 Han characters (Chinese) occur in the source: the model invented content
The backend-level `truncated` (the output hit max_tokens) is checked by the caller.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from vtcurate.models.langid import LanguageIdentifier
from vtcurate.text.script import caption_length, chinese_by_script, script_stats

_LABEL = re.compile(
    r"^\s*(?:\**\s*)?(?:rewritten caption|caption|description|rewritten|output|answer|改写后|描述|标题)"
    r"\s*[:：]\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok\b|absolutely|here(?:'s| is| are)|as an ai|i'm sorry|"
    r"i am sorry|i cannot|i can't|i'd be happy|the rewritten|this is a rewritten|"
    r"好的|当然|以下是|这是改写|改写如下|作为一个?(?:人工智能|AI)|抱歉|对不起)",
    re.IGNORECASE,
)
_URL = re.compile(r"(?:https?://|www\.)\S+|\b\S+@\S+\.\w{2,}\b", re.IGNORECASE)
_QUOTES = ('""', "''", "“”", "「」", "『』", "‘’")


def clean_output(text: str | None) -> str:
    text = " ".join((text or "").split())
    text = _LABEL.sub("", text)
    for open_, close in _QUOTES:
        if len(text) >= 2 and text[0] == open_ and text[-1] == close:
            text = text[1:-1].strip()
    return text


def _units(text: str, lang: str) -> list[str]:
    if lang == "zh":
        return [c for c in text if not c.isspace() and c.isalnum()]
    return re.findall(r"\w+", text.casefold())


_STOP_WORDS = (
    "a an the and or of to in on at by for with from into onto as is are was were be been being it its "
    "this that these those there here then than while across over under up down out very his her "
    "their through"
)
_STOP = frozenset(_STOP_WORDS.split())
_HAN_CHAR = re.compile(r"[\u3400-\u9fff]")


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def grounding(text: str, source: str, lang: str) -> float:
    """Share of the output's content units that also occur in the source (1.0 if it has none)."""
    if lang == "zh":
        units, known = _HAN_CHAR.findall(text), set(_HAN_CHAR.findall(source))
    else:
        units = [_stem(w) for w in _units(text, lang) if w not in _STOP]
        known = {_stem(w) for w in _units(source, lang)}
    return sum(u in known for u in units) / len(units) if units else 1.0


def has_repetition(text: str, lang: str) -> bool:
    units = _units(text, lang)
    run = 1
    for a, b in zip(units, units[1:]):
        run = run + 1 if a == b else 1
        if run >= 4:  # "very very very very"
            return True
    n = 4 if lang == "zh" else 3
    grams = Counter(tuple(units[i : i + n]) for i in range(len(units) - n + 1))
    return bool(grams) and grams.most_common(1)[0][1] >= 3


@dataclass(frozen=True)
class OutputRules:
    min_length_ratio: float = 0.3
    max_length_ratio: float = 3.0
    min_lang_score: float = 0.3
    min_grounding: float = 0.6
    zh_script_ratio: float = 0.5


def detect_language(text: str, lid: LanguageIdentifier, zh_script_ratio: float) -> tuple[str, float]:
    """lid.176, overruled for Chinese by the Han share of the text (as in the langid stage)."""
    guess = lid.detect(text)
    stats = script_stats(text)
    if chinese_by_script(stats, zh_script_ratio):
        return "zh", max(guess.scores.get("zh", 0.0), stats.han_ratio)
    return guess.lang, guess.score


def output_problem(
    text: str, source: str, lang: str, lid: LanguageIdentifier, rules: OutputRules
) -> str | None:
    if not text:
        return "empty"
    if _PREAMBLE.match(text):
        return "preamble"
    if _URL.search(text):
        return "url"
    if has_repetition(text, lang):
        return "repetition"
    got, score = detect_language(text, lid, rules.zh_script_ratio)
    if got != lang or score < rules.min_lang_score:
        return "wrong_language"
    n, base = caption_length(text, lang), max(1, caption_length(source, lang))
    if n < rules.min_length_ratio * base:
        return "too_short"
    if n > rules.max_length_ratio * base:
        return "too_long"
    if grounding(text, source, lang) < rules.min_grounding:
        return "ungrounded"
    return None
