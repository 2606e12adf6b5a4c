"""rewrite: turn each noisy caption into a clean, visually grounded one in the same language.

The LLM (see vtcurate.models.backends) gets the language's prompt (configs/prompts/rewrite.yaml).
Every output is cleaned and validated (vtcurate.text.validate); a failing one is retried, and after
`attempts` failures the row keeps its normalised caption, with `rewrite_status` saying why
(`fallback:<rule>`); rows in languages not listed in `languages` keep theirs as
`skipped:language`.  No row is dropped here: a caption that cannot be improved is still usable.
The caption before rewriting is kept as `caption_original`; model id, prompt hash and sampling are
recorded per row, and outputs are cached by (caption, language, model, prompt, sampling) in the
run directory, so a rerun or a resumed run does not generate them again.
"""

from __future__ import annotations

import json
from functools import cached_property

import pyarrow as pa

from vtcurate.config import RewriteConfig
from vtcurate.models.backends import open_generator, sampling_of
from vtcurate.models.devices import generator_wants_gpu
from vtcurate.models.gencache import GenerationCache
from vtcurate.models.generation import Generator, digest
from vtcurate.models.langid import LanguageIdentifier
from vtcurate.models.validated import Request, generate_validated
from vtcurate.stages.base import Resources, Stage, column, set_column, with_decisions
from vtcurate.text.prompts import load_prompts, prompt_sha, render
from vtcurate.text.validate import OutputRules, clean_output, output_problem


class RewriteStage(Stage):
    name = "rewrite"
    output_columns = (
        "caption_original",
        "rewrite_status",
        "rewrite_attempts",
        "rewrite_cached",
        "rewrite_output_tokens",
        "rewrite_model",
        "rewrite_prompt_sha",
        "rewrite_sampling",
    )
    score_columns = ("rewrite_attempts", "rewrite_output_tokens")

    config: RewriteConfig

    @property
    def resources(self) -> Resources:
        llm = self.config.llm
        gpus = 1.0 if generator_wants_gpu(llm) else 0.0
        # transformers on CPU uses the worker's threads; HTTP backends mostly wait
        cpus = 1.0 if llm.backend == "transformers" else 0.5
        return Resources(num_cpus=cpus, num_gpus=gpus, batch_size=max(8, llm.batch_size))

    @cached_property
    def _prompts(self):
        return load_prompts(self.config.prompts, "rewrite.yaml")

    @cached_property
    def _generator(self) -> Generator:
        return open_generator(self.config.llm, "chat")

    @cached_property
    def _lid(self) -> LanguageIdentifier:
        return LanguageIdentifier()

    @cached_property
    def _cache(self) -> GenerationCache:
        enabled = self.config.cache and self.work_dir is not None
        return GenerationCache(self.work_dir if enabled else None)

    def preflight(self) -> list[str]:
        from vtcurate.models.availability import generator_problem

        problem = generator_problem(self.config.llm, "chat")
        return [f"rewrite.llm: {problem}"] if problem else []

    def setup(self) -> None:
        _ = self._prompts, self._generator

    def teardown(self) -> None:
        if "_generator" in vars(self):
            self._generator.close()
            del self._generator

    def provenance(self) -> dict:
        cfg = self.config
        return {
            "llm": cfg.llm.model_dump(exclude={"api_key_env"}),
            "prompts": {lang: prompt_sha(p) for lang, p in self._prompts.items()},
            "prompt_file": cfg.prompts,
        }

    def __call__(self, batch: pa.Table) -> pa.Table:
        cfg = self.config
        captions = batch.column("caption").to_pylist()
        langs = column(batch, "lang")
        gen = self._generator
        sampling = sampling_of(cfg.llm)
        sampling_json = json.dumps(sampling.as_dict(), sort_keys=True)
        rules = OutputRules(cfg.min_length_ratio, cfg.max_length_ratio, cfg.min_lang_score, cfg.min_grounding)
        todo, requests, shas = [], [], [None] * batch.num_rows
        status: list[str] = ["skipped:language"] * batch.num_rows
        for i, (caption, lang) in enumerate(zip(captions, langs)):
            prompt = self._prompts.get(lang)
            if lang not in cfg.languages:
                continue
            if not caption:
                status[i] = "skipped:empty"
                continue
            if prompt is None:
                status[i] = "fallback:no_prompt_for_language"
                continue
            shas[i] = prompt_sha(prompt)
            key = digest("rewrite", caption, lang, gen.model_id, shas[i], sampling_json)
            todo.append(i)
            requests.append(Request(key, render(prompt, caption)))

        def check(j: int, raw: str | None) -> tuple[str, str | None]:
            i = todo[j]
            text = clean_output(raw)
            return text, output_problem(text, captions[i], langs[i], self._lid, rules)

        outcomes = generate_validated(gen, requests, sampling, check, self._cache, cfg.attempts,
                                      cfg.retry_temperature)  # fmt: skip
        new_caption = list(captions)
        attempts: list[int] = [0] * batch.num_rows
        cached: list[bool] = [False] * batch.num_rows
        tokens: list[int] = [0] * batch.num_rows
        for i, o in zip(todo, outcomes):
            if o.text is not None:
                new_caption[i], status[i] = o.text, "rewritten"
            else:
                status[i] = f"fallback:{o.problem}"
            attempts[i], cached[i], tokens[i] = o.attempts, o.cached, o.output_tokens
        n = batch.num_rows
        batch = set_column(batch, "caption_original", captions, pa.string())
        batch = set_column(batch, "caption", new_caption, pa.string())
        batch = set_column(batch, "rewrite_status", status, pa.string())
        batch = set_column(batch, "rewrite_attempts", attempts, pa.int32())
        batch = set_column(batch, "rewrite_cached", cached, pa.bool_())
        batch = set_column(batch, "rewrite_output_tokens", tokens, pa.int32())
        batch = set_column(batch, "rewrite_model", [gen.model_id] * n, pa.string())
        batch = set_column(batch, "rewrite_prompt_sha", shas, pa.string())
        batch = set_column(batch, "rewrite_sampling", [sampling_json] * n, pa.string())
        return with_decisions(batch, [None] * n, [None] * n)
