"""A second opinion on the language of short text: Lingua, restricted to candidate languages.

fastText lid.176 is fast and good on sentences, but on a caption of a few words it spreads its
probability thin and often ranks a neighbour first ("a man walks a dog" -> de 0.15, fr 0.15,
en 0.10).  Lingua (`lingua-language-detector`, models bundled in the wheel: no network) uses
n-grams of one to five characters and is accurate on very short text.  It is asked to choose only
among the candidate languages of one caption: the allowed languages plus those lid.176 proposed,
so it settles the question lid.176 raised instead of opening a new one among 75 languages.

Lingua keeps the language models it has loaded in one process-wide cache, shared by every
detector: a detector for a new set of candidates costs well under a millisecond to build (they are
cached here per set), and a language's model is read once per process, on its first use
(0.5-1 s and some 20-40 MB each).  `preload()` reads the models of the allowed languages up front.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

# lid.176 codes that are not Lingua's ISO 639-1/639-3 codes of the same language
_ALIASES = {"no": "nb"}
_LID_CODES = {v: k for k, v in _ALIASES.items()}


@dataclass(frozen=True)
class ShortGuess:
    lang: str | None  # an ISO 639-1 code as lid.176 writes it; None: no candidate fits the text
    score: float  # Lingua's confidence among the candidates (they sum to 1)


@cache
def _languages() -> dict:
    from lingua import Language

    codes = {}
    for lang in Language.all():
        codes[lang.iso_code_639_3.name.lower()] = lang
        codes[lang.iso_code_639_1.name.lower()] = lang  # two letters win where both exist
    return codes


def lingua_language(code: str):
    """Lingua's Language for a lid.176 code, or None where Lingua does not know the language."""
    return _languages().get(_ALIASES.get(code, code))


def lid_code(language) -> str:
    """The lid.176 code of a Lingua Language (ISO 639-1, lower case)."""
    code = language.iso_code_639_1.name.lower()
    return _LID_CODES.get(code, code)


class ShortTextIdentifier:
    """Lingua in high-accuracy mode; one detector per candidate set, models shared per process."""

    def __init__(self) -> None:
        self._detectors: dict[frozenset, object] = {}

    def preload(self, codes: Iterable[str]) -> None:
        """Read the models of these languages now (setup), not on the first caption that needs them."""
        from lingua import LanguageDetectorBuilder

        languages = {lingua_language(c) for c in codes} - {None}
        if languages:
            LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()

    def _detector(self, languages: frozenset):
        detector = self._detectors.get(languages)
        if detector is None:
            from lingua import LanguageDetectorBuilder

            # in name order: a set's order follows the process's string hashing, and Lingua's sums
            # would then differ in their last bits from one worker to the next
            ordered = sorted(languages, key=lambda language: language.name)
            detector = LanguageDetectorBuilder.from_languages(*ordered).build()
            self._detectors[languages] = detector
        return detector

    def detect(self, text: str, candidates: Iterable[str]) -> ShortGuess:
        """The most likely candidate (lid.176 codes) and its confidence among the candidates."""
        languages = frozenset(lingua_language(c) for c in candidates) - {None}
        if len(languages) < 2 or not text.strip():
            return ShortGuess(None, 0.0)  # nothing to choose between
        values = self._detector(languages).compute_language_confidence_values(text)
        if not values or values[0].value <= 0.0:
            return ShortGuess(None, 0.0)  # no candidate is written in this text's alphabet
        # rounded: the last bits of a confidence may still differ between processes, and the score
        # is a stored column (in the shards too), which must not depend on the worker
        return ShortGuess(lid_code(values[0].language), round(float(values[0].value), 6))

    def provenance(self) -> dict:
        from importlib.metadata import version

        return {
            "model": "lingua (high-accuracy mode, models bundled in the wheel)",
            "package": f"lingua-language-detector=={version('lingua-language-detector')}",
            "random_weights": False,
        }
