"""langid: normalise captions, identify their language, keep the configured languages.

Decision rule (documented in the README):
1. Normalise (see vtcurate.text.normalize); an empty result is `empty_caption`.
2. Script rule for Chinese: a caption without kana/Hangul whose Han share of units is at least
   `zh_script_ratio` is Chinese, with lang_score = max(fastText P(zh), Han share).  This keeps
   pure-Han sentences that fastText calls `ja`/`wuu`, and Chinese captions with English brand names.
3. Otherwise fastText lid.176 decides, with its probability as lang_score.
4. Reject other languages (`lang_not_allowed`), low confidence (`low_lang_confidence`), and
   captions outside the per-language length limits (`caption_too_short` / `caption_too_long`).
Chinese captions are converted from Traditional to Simplified (OpenCC t2s) after the decision.
"""

from __future__ import annotations

from functools import cached_property

import pyarrow as pa

from vtcurate.config import LangIdConfig
from vtcurate.models.langid import LanguageIdentifier
from vtcurate.stages.base import Resources, Stage, set_column, with_decisions
from vtcurate.text.normalize import normalize_caption
from vtcurate.text.script import caption_length, chinese_by_script, script_stats


class LangIdStage(Stage):
    name = "langid"
    output_columns = (
        "caption_raw",
        "lang",
        "lang_score",
        "lang_rule",
        "lang_fasttext",
        "lang_fasttext_score",
        "han_ratio",
        "caption_length",
    )
    score_columns = ("lang_score", "lang_fasttext_score", "han_ratio", "caption_length")

    config: LangIdConfig

    @property
    def resources(self) -> Resources:
        return Resources(num_cpus=0.5, batch_size=256)

    @cached_property
    def _lid(self) -> LanguageIdentifier:
        return LanguageIdentifier()

    @cached_property
    def _t2s(self):
        from opencc import OpenCC

        return OpenCC("t2s")

    def setup(self) -> None:
        self._lid.detect("warm up")  # load the model once per worker

    def provenance(self) -> dict:
        return {"langid": self._lid.provenance(), "opencc": "opencc-python-reimplemented t2s"}

    def score(self, caption: str) -> dict:
        text = normalize_caption(caption, tuple(self.config.boilerplate))
        guess = self._lid.detect(text)
        stats = script_stats(text)
        row = {
            "text": text,
            "lang": guess.lang,
            "lang_score": guess.score,
            "lang_rule": "fasttext",
            "lang_fasttext": guess.lang,
            "lang_fasttext_score": guess.score,
            "han_ratio": stats.han_ratio,
        }
        if chinese_by_script(stats, self.config.zh_script_ratio):
            row.update(
                lang="zh",
                lang_rule="script",
                lang_score=max(guess.scores.get("zh", 0.0), stats.han_ratio),
            )
        if row["lang"] == "zh" and self.config.traditional_to_simplified:
            row["text"] = self._t2s.convert(text)
        row["caption_length"] = caption_length(row["text"], row["lang"])
        return row

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

    def __call__(self, batch: pa.Table) -> pa.Table:
        captions = batch.column("caption").to_pylist()
        rows = [self.score(c or "") for c in captions]
        decisions = [self.decide(r) for r in rows]
        batch = set_column(batch, "caption_raw", captions, pa.string())
        batch = set_column(batch, "caption", [r["text"] for r in rows], pa.string())
        for col, type_ in (
            ("lang", pa.string()),
            ("lang_score", pa.float64()),
            ("lang_rule", pa.string()),
            ("lang_fasttext", pa.string()),
            ("lang_fasttext_score", pa.float64()),
            ("han_ratio", pa.float64()),
            ("caption_length", pa.int64()),
        ):
            batch = set_column(batch, col, [r[col] for r in rows], type_)
        return with_decisions(batch, [d[0] for d in decisions], [d[1] for d in decisions])
