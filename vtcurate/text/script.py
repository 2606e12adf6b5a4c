"""Writing-system statistics of a caption, for the code-switching rule and length limits.

fastText weighs the writing system poorly on short text (a pure-Han sentence can come back as
`ja` or `wuu`), so the Chinese decision also looks at the share of Han characters.  A unit is one
Han character or one run of other letters (a Latin word): "这个视频展示了 how to cook pasta 的步骤"
has 10 Han units and 4 Latin units, so it is Chinese; "a trip to Beijing 北京" is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9d]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
# runs of letters that are not Han, kana or Hangul (Latin, Cyrillic, Arabic, ...)
_WORD = re.compile(r"[^\W\d_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+")
_EN_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")


@dataclass(frozen=True)
class ScriptStats:
    han: int
    kana: int
    hangul: int
    words: int  # runs of other letters

    @property
    def han_ratio(self) -> float:
        units = self.han + self.kana + self.hangul + self.words
        return self.han / units if units else 0.0


def script_stats(text: str) -> ScriptStats:
    return ScriptStats(
        han=len(_HAN.findall(text)),
        kana=len(_KANA.findall(text)),
        hangul=len(_HANGUL.findall(text)),
        words=len(_WORD.findall(text)),
    )


def caption_length(text: str, lang: str) -> int:
    """Words for space-separated languages, characters (no spaces/punctuation) for Chinese."""
    if lang == "zh":
        return sum(1 for ch in text if ch.isalnum())
    return len(_EN_WORD.findall(text)) if lang == "en" else len(text.split())


def chinese_by_script(stats: ScriptStats, zh_script_ratio: float) -> bool:
    """The Han-share rule: no kana or Hangul, and Han characters make up enough of the units."""
    return stats.kana == 0 and stats.hangul == 0 and stats.han > 0 and stats.han_ratio >= zh_script_ratio
