"""clip_filter: keep clips whose key-frames match their caption under a CLIP model.

Score: the cosine similarity of each key-frame's embedding with the caption's (`clip_frame_scores`),
reduced to `clip_score` by mean, max or min.  The model is chosen by the caption's language ('*'
is the fallback), so an English CLIP can score English and a multilingual one Chinese.
`clip_embedding` is the clip's mean key-frame embedding, L2-normalised, as float16: what
semantic_dedup compares (shards leave it out).

Decision: per language, either an absolute cosine threshold (decided in the same call as the
score), or a top fraction of that language's scores over the whole run (a run-wide plan, see
stages/base.py: its cut-off is the k-th best score, k = ceil(fraction * n); ties at the cut-off
are kept).  With randomly initialised weights the
scores are noise: unless `enforce_with_random_weights`, nothing is dropped, `clip_pass` records
what the threshold would have decided, and stats.json says `decisions_enforced: false`.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from vtcurate.config import ClipFilterConfig, ClipModelSpec
from vtcurate.models.devices import wants_gpu
from vtcurate.stages.base import (
    DROP_REASON,
    Resources,
    Stage,
    column,
    keep_earlier_drops,
    set_column,
    top_fraction_cutoff,
    with_decisions,
)
from vtcurate.storage import read_columns

_REDUCE = {"mean": np.mean, "max": np.max, "min": np.min}


class ClipFilterStage(Stage):
    name = "clip_filter"
    output_columns = ("clip_frame_scores", "clip_score", "clip_model", "clip_embedding", "clip_pass")
    score_columns = ("clip_score",)

    config: ClipFilterConfig

    @property
    def resources(self) -> Resources:
        gpus = 1.0 if any(wants_gpu(spec.device) for spec in self.config.models.values()) else 0.0
        return Resources(num_cpus=1.0, num_gpus=gpus, batch_size=self.config.batch_size)

    global_plan = True
    decision_reasons = ("low_clip_score",)

    def static_plan(self) -> dict | None:
        """Absolute thresholds need no other partition's scores: decided as each one is scored."""
        if any(t.mode == "top_fraction" for t in self.config.thresholds.values()):
            return None
        return {"thresholds": self._thresholds(dict.fromkeys(self.config.thresholds, [])), **self.summary()}

    def spec_for(self, lang: str | None) -> ClipModelSpec | None:
        models = self.config.models
        return models.get(lang or "") or models.get("*")

    def preflight(self) -> list[str]:
        from vtcurate.models.availability import clip_problem

        problems = ((lang, clip_problem(spec)) for lang, spec in self.config.models.items())
        return [f"clip_filter.models.{lang}: {problem}" for lang, problem in problems if problem]

    def setup(self) -> None:
        from vtcurate.models.clip import load_clip  # torch: not for workers that only apply a plan

        for spec in self.config.models.values():
            load_clip(spec)

    @cached_property
    def _weights(self) -> dict[str, dict]:
        """weights_info per language, read once (it opens each checkpoint for its note)."""
        from vtcurate.models.clip import weights_info

        return {lang: weights_info(spec) for lang, spec in self.config.models.items()}

    def _enforced(self, lang: str | None, weights: dict[str, dict]) -> bool:
        """Decisions for a language are enforced unless its own model's weights are random."""
        key = lang if lang in weights else "*"
        random = weights[key]["random_weights"] if key in weights else False
        return not random or self.config.enforce_with_random_weights

    def provenance(self) -> dict:
        return {"models": self._weights, "aggregate": self.config.aggregate}

    def summary(self) -> dict:
        """For stats.json: `decisions_enforced` is false if any language's decisions were not."""
        weights = self._weights
        random = any(w["random_weights"] for w in weights.values())
        return {
            "random_weights": random,
            "decisions_enforced": all(self._enforced(lang, weights) for lang in weights),
        }

    def __call__(self, batch: pa.Table) -> pa.Table:
        langs = [lang or "und" for lang in column(batch, "lang")]
        captions = batch.column("caption").to_pylist()
        frames = batch.column("frames").to_pylist()
        n = batch.num_rows
        frame_scores: list[list[float] | None] = [None] * n
        embeddings: list[np.ndarray | None] = [None] * n
        models: list[str | None] = [None] * n
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        groups: dict[str, list[int]] = defaultdict(list)
        for i, lang in enumerate(langs):
            spec = self.spec_for(lang)
            if spec is None:
                reasons[i], details[i] = "no_clip_model", f"no model for language {lang!r} and no '*'"
            elif not frames[i]:
                reasons[i], details[i] = "missing_frames", "no key-frames to score"
            else:
                groups[spec.model_dump_json()].append(i)
        from vtcurate.models.clip import load_clip

        for rows in groups.values():
            model = load_clip(self.spec_for(langs[rows[0]]))
            flat = [jpg for i in rows for jpg in frames[i]]
            images = model.embed_images(flat)
            texts = model.embed_texts([captions[i] for i in rows])
            offset = 0
            for r, i in enumerate(rows):
                k = len(frames[i])
                frame_scores[i] = (images[offset : offset + k] @ texts[r]).astype(float).tolist()
                mean = images[offset : offset + k].mean(axis=0)
                embeddings[i] = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float16)
                models[i] = model.model_id
                offset += k
        reduce = _REDUCE[self.config.aggregate]
        clip_scores = [float(reduce(s)) if s else None for s in frame_scores]
        batch = set_column(batch, "clip_frame_scores", frame_scores, pa.list_(pa.float32()))
        batch = set_column(batch, "clip_score", clip_scores, pa.float64())
        batch = set_column(batch, "clip_model", models, pa.string())
        batch = set_column(batch, "clip_embedding", embeddings, pa.list_(pa.float16()))
        batch = set_column(batch, "clip_pass", [None] * n, pa.bool_())
        return with_decisions(batch, reasons, details)

    def plan(self, scored: list[Path]) -> dict:
        cols = read_columns(scored, ["lang", "clip_score", DROP_REASON])
        by_lang: dict[str, list[float]] = defaultdict(list)
        for lang, score, reason in zip(cols["lang"], cols["clip_score"], cols[DROP_REASON]):
            if reason is None and score is not None:
                by_lang[lang or "und"].append(score)
        return {"thresholds": self._thresholds(by_lang), **self.summary()}

    def _thresholds(self, by_lang: dict[str, list[float]]) -> dict[str, dict | None]:
        """Each language's cut-off: its absolute value, or the top fraction of its `scores`."""
        weights = self._weights
        thresholds: dict[str, dict | None] = {}
        for lang, scores in sorted(by_lang.items()):
            spec = self.config.thresholds.get(lang) or self.config.thresholds.get("*")
            if spec is None:
                thresholds[lang] = None
                continue
            cutoff = spec.value if spec.mode == "absolute" else top_fraction_cutoff(scores, spec.value)
            thresholds[lang] = {
                "mode": spec.mode, "value": spec.value, "cutoff": cutoff, "n": len(scores),
                "enforced": self._enforced(lang, weights),
            }  # fmt: skip
        return thresholds

    def apply_plan(self, table: pa.Table, plan: dict) -> pa.Table:
        langs = [lang or "und" for lang in column(table, "lang")]
        scores = table.column("clip_score").to_pylist()
        passes, reasons, details = [], [], []
        thresholds = plan["thresholds"]
        for lang, score in zip(langs, scores):
            if lang in thresholds:
                t = thresholds[lang]
                enforced = t is not None and t["enforced"]
            else:  # a static plan's '*' fallback, enforced by the language's own model weights
                t = thresholds.get("*")
                enforced = t is not None and self._enforced(lang, self._weights)
            ok = None if score is None or t is None else bool(score >= t["cutoff"])
            passes.append(ok)
            if ok is False and enforced:
                what = f"top {t['value']:.0%} of {t['n']}" if t["mode"] == "top_fraction" else "absolute"
                reasons.append("low_clip_score")
                details.append(f"{score:.3f} < {t['cutoff']:.3f} ({lang}, {what})")
            else:
                reasons.append(None)
                details.append(None)
        table = set_column(table, "clip_pass", passes, pa.bool_())
        return keep_earlier_drops(table, reasons, details)
