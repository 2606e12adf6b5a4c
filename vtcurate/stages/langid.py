"""langid: normalise captions, identify their language, keep the configured languages.

Decision rule (documented in the README):
1. Normalise (see vtcurate.text.normalize); an empty result is `empty_caption`.
2. Script rule for Chinese: a caption without kana/Hangul whose Han share of units is at least
   `zh_script_ratio` is Chinese, with lang_score = max(fastText P(zh), Han share).  This keeps
   pure-Han sentences that fastText calls `ja`/`wuu`, and Chinese captions with English brand names.
3. Otherwise fastText lid.176 decides, with its probability as lang_score.
4. Second opinion on short text: a caption of at most `second_opinion_max_words` words is also
   scored by Lingua, restricted to the candidates (the allowed languages plus those lid.176
   proposed); the answer is stored as `lang_lingua` / `lang_lingua_score`.  Where step 3 would
   reject the caption (a language that is not allowed, ranked first at a probability below
   `second_opinion_max_rival`, or an allowed one below its `min_confidence`) and Lingua names an
   allowed language at `second_opinion_min_confidence` or more, Lingua's answer decides
   (lang_rule `lingua`).  "a man walks a dog" is `de` 0.15 for lid.176 and `en` for Lingua.
5. Reject other languages (`lang_not_allowed`), low confidence (`low_lang_confidence`), and
   captions outside the per-language length limits (`caption_too_short` / `caption_too_long`).
Chinese captions are converted from Traditional to Simplified (OpenCC t2s) once the language is known.
"""

from __future__ import annotations

import time
from functools import cached_property

import pyarrow as pa

from vtcurate.config import LangIdConfig
from vtcurate.models.langid import LangGuess, LanguageIdentifier
from vtcurate.stages.base import (
    DROP_DETAIL,
    DROP_REASON,
    Resources,
    Stage,
    column,
    reopen,
    set_column,
    with_decisions,
)
from vtcurate.text.normalize import normalize_caption
from vtcurate.text.script import ScriptStats, caption_length, chinese_by_script, script_stats
from vtcurate.text.short_lid import ShortTextIdentifier, lingua_language

# lid.176 proposals below this probability are not offered to Lingua as candidates
CANDIDATE_MIN_PROB = 0.02

_COLUMNS = (
    ("lang", pa.string()),
    ("lang_score", pa.float64()),
    ("lang_rule", pa.string()),
    ("lang_fasttext", pa.string()),
    ("lang_fasttext_score", pa.float64()),
    ("lang_lingua", pa.string()),
    ("lang_lingua_score", pa.float64()),
    ("han_ratio", pa.float64()),
    ("caption_length", pa.int64()),
)


class LangIdStage(Stage):
    name = "langid"
    decision_reasons = ("lang_not_allowed", "low_lang_confidence", "caption_too_short", "caption_too_long")
    output_columns = ("caption_raw", *(name for name, _ in _COLUMNS))
    score_columns = (
        "lang_score",
        "lang_fasttext_score",
        "lang_lingua_score",
        "han_ratio",
        "caption_length",
    )

    config: LangIdConfig
    lingua_load_s: float | None = None  # seconds setup() took to read Lingua's models

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=0.5, batch_size=256)

    @cached_property
    def _lid(self) -> LanguageIdentifier:
        return LanguageIdentifier()

    @cached_property
    def _short(self) -> ShortTextIdentifier:
        return ShortTextIdentifier()

    @cached_property
    def _t2s(self):
        from opencc import OpenCC

        return OpenCC("t2s")

    def setup(self) -> None:
        self._lid.detect("warm up")  # load the model once per worker
        if self.config.second_opinion_max_words:
            # Lingua's models of the allowed languages (0.2-2 s); rivals' load on their first use
            t0 = time.perf_counter()
            self._short.preload(self.config.languages)
            self.lingua_load_s = time.perf_counter() - t0

    def provenance(self) -> dict:
        return {
            "langid": self._lid.provenance(),
            "second_opinion": self._short.provenance(),
            "opencc": "opencc-python-reimplemented t2s",
        }

    def _second_opinion(
        self,
        text: str,
        stats: ScriptStats,
        guess: LangGuess,
    ) -> tuple[str | None, float | None]:
        """Lingua's answer among the candidates, for a short caption; (None, None) where not asked."""
        units = stats.han + stats.kana + stats.hangul + stats.words
        if not text or units > self.config.second_opinion_max_words:
            return None, None
        if lingua_language(guess.lang) is None:
            return None, None  # Lingua cannot weigh lid.176's first choice against the others
        proposed = [lang for lang, p in guess.scores.items() if p >= CANDIDATE_MIN_PROB]
        answer = self._short.detect(text, [*self.config.languages, *proposed])
        return answer.lang, (answer.score if answer.lang else None)

    def score(self, caption: str) -> dict:
        text = normalize_caption(caption, tuple(self.config.boilerplate))
        guess = self._lid.detect(text)
        stats = script_stats(text)
        lingua, lingua_score = self._second_opinion(text, stats, guess)
        row = {
            "normalized": text,
            "lang": guess.lang,
            "lang_score": guess.score,
            "lang_rule": "fasttext",
            "lang_fasttext": guess.lang,
            "lang_fasttext_score": guess.score,
            "lang_lingua": lingua,
            "lang_lingua_score": lingua_score,
            "han_ratio": stats.han_ratio,
        }
        if chinese_by_script(stats, self.config.zh_script_ratio):
            row.update(
                lang="zh",
                lang_rule="script",
                lang_score=max(guess.scores.get("zh", 0.0), stats.han_ratio),
            )
        return self._finish(row)

    def _finish(self, row: dict) -> dict:
        """What follows from the language: the text (Simplified if Chinese) and its length in units."""
        row["text"] = row["normalized"]
        if row["lang"] == "zh" and self.config.traditional_to_simplified:
            row["text"] = self._t2s.convert(row["text"])
        row["caption_length"] = caption_length(row["text"], row["lang"])
        return row

    def resolve(self, row: dict) -> dict:
        """Decision step 4, from the score columns alone (so it can be applied again to a stored
        row): Lingua's answer where lid.176's would reject a short caption, else lid.176's."""
        if row["lang_rule"] == "script":
            return row
        rule = "lingua" if self._lingua_overrules(row) else "fasttext"
        chosen = {"lang": row[f"lang_{rule}"], "lang_score": row[f"lang_{rule}_score"], "lang_rule": rule}
        if all(row[k] == v for k, v in chosen.items()):
            return row
        return self._finish({**row, **chosen})

    def _lingua_overrules(self, row: dict) -> bool:
        cfg = self.config
        lang, score = row["lang_fasttext"], row["lang_fasttext_score"]
        if row["lang_lingua"] not in cfg.languages:
            return False
        if row["lang_lingua_score"] < cfg.second_opinion_min_confidence:
            return False
        if lang in cfg.languages:
            return score < cfg.min_confidence[lang]  # lid.176 unsure of an allowed language
        return score < cfg.second_opinion_max_rival  # a low-confidence language that is not allowed

    def decide(self, row: dict) -> tuple[str | None, str | None]:
        cfg = self.config
        lang = row["lang"]
        if not row["text"]:
            return "empty_caption", "nothing left after normalisation"
        if lang not in cfg.languages:
            return "lang_not_allowed", f"{lang} ({row['lang_score']:.2f}) not in {cfg.languages}"
        if row["lang_score"] < cfg.min_confidence[lang]:
            return "low_lang_confidence", f"{lang} {row['lang_score']:.2f} < {cfg.min_confidence[lang]}"
        n = row["caption_length"]
        unit = "characters" if lang == "zh" else "words"
        if n < cfg.min_length[lang]:
            return "caption_too_short", f"{n} {unit} < {cfg.min_length[lang]}"
        if n > cfg.max_length[lang]:
            return "caption_too_long", f"{n} {unit} > {cfg.max_length[lang]}"
        return None, None

    def redecide(self, table: pa.Table) -> pa.Table:
        """Steps 4 and 5 again on stored rows: the second opinion's rule, then the limits."""
        table = reopen(table, self.decision_reasons)
        stored = table.select(["caption_raw", "caption", *(c for c, _ in _COLUMNS)]).to_pylist()
        reasons, details = column(table, DROP_REASON), column(table, DROP_DETAIL)
        rows = []
        for i, row in enumerate(stored):
            if reasons[i] is None:  # the text before Simplified conversion, as score() had it
                normalized = normalize_caption(row["caption_raw"] or "", tuple(self.config.boilerplate))
                row = self.resolve({**row, "normalized": normalized, "text": row["caption"]})
                reasons[i], details[i] = self.decide(row)
            rows.append(row)
        table = set_column(table, "caption", [r.get("text", r["caption"]) for r in rows])
        for col, type_ in _COLUMNS:
            table = set_column(table, col, [r[col] for r in rows], type_)
        return with_decisions(table, reasons, details)

    def __call__(self, batch: pa.Table) -> pa.Table:
        captions = batch.column("caption").to_pylist()
        rows = [self.resolve(self.score(c or "")) for c in captions]
        decisions = [self.decide(r) for r in rows]
        batch = set_column(batch, "caption_raw", captions, pa.string())
        batch = set_column(batch, "caption", [r["text"] for r in rows], pa.string())
        for col, type_ in _COLUMNS:
            batch = set_column(batch, col, [r[col] for r in rows], type_)
        return with_decisions(batch, [d[0] for d in decisions], [d[1] for d in decisions])
