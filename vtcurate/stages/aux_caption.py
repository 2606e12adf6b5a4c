"""aux_caption: captions of the key-frames, for auxiliary-caption guidance in training.

Backends: `retrieval` (CLIP picks phrases from a bank; CPU-cheap), `transformers` (an image-to-text
model directory), `openai` / `vllm` (a VLM; the frame goes as an image with the language's prompt
from configs/prompts/aux_caption.yaml).  Mode `all` captions every key-frame, `middle` only the
middle one; each configured language gets its own caption.  Outputs are validated like rewrite's
(empty, preamble, URL, repetition loop, language, length), retried, and cached by (frame bytes,
language, model, prompt, sampling).  No row is dropped: `aux_status` says how many captions failed.
`aux_captions` is a list of {frame, lang, text}; it travels into each shard sample's .json.
"""

from __future__ import annotations

import json
from functools import cached_property

import pyarrow as pa

from vtcurate.config import AuxCaptionConfig
from vtcurate.models.backends import open_generator, sampling_of
from vtcurate.models.devices import generator_wants_gpu, wants_gpu
from vtcurate.models.gencache import GenerationCache
from vtcurate.models.generation import Chat, Generator, digest, image_part
from vtcurate.models.langid import LanguageIdentifier
from vtcurate.models.validated import Request, generate_validated
from vtcurate.stages.base import Resources, Stage, set_column, with_decisions
from vtcurate.storage import read_columns
from vtcurate.text.prompts import load_prompts, prompt_sha, render
from vtcurate.text.validate import OutputRules, clean_output, detect_language, output_problem

# an aux caption has no source text to compare lengths with: max_chars bounds it instead
_AUX_RULES = OutputRules(min_length_ratio=0.0, max_length_ratio=float("inf"))
AUX_TYPE = pa.list_(pa.struct([("frame", pa.int32()), ("lang", pa.string()), ("text", pa.string())]))


class AuxCaptionStage(Stage):
    name = "aux_caption"
    output_columns = ("aux_captions", "aux_status", "aux_model", "aux_prompt_sha")

    config: AuxCaptionConfig

    @property
    def resources(self) -> Resources:
        cfg = self.config
        gpu = wants_gpu(cfg.clip.device) if cfg.backend == "retrieval" else generator_wants_gpu(cfg.llm)
        gpus = 1.0 if gpu else 0.0
        return Resources(num_cpus=1.0 if cfg.backend in ("retrieval", "transformers") else 0.5,
                         num_gpus=gpus, batch_size=16)  # fmt: skip

    @property
    def reads_whole_input(self) -> bool:
        """The retrieval backend's default phrase bank is every caption of this stage's input."""
        return self.config.backend == "retrieval" and not self.config.phrase_bank

    @cached_property
    def _prompts(self):
        if self.config.backend not in ("openai", "vllm"):
            return {}
        return load_prompts(self.config.prompts, "aux_caption.yaml")

    @cached_property
    def _generators(self) -> dict[str, Generator]:
        cfg = self.config
        if cfg.backend != "retrieval":
            shared = open_generator(cfg.llm, "caption")
            return dict.fromkeys(cfg.languages, shared)
        from vtcurate.models.retrieval_captioner import RetrievalCaptioner

        bank = self._phrase_bank()
        return {
            lang: RetrievalCaptioner(cfg.clip, bank.get(lang, []), cfg.top_k, lang) for lang in cfg.languages
        }

    def _phrase_bank(self) -> dict[str, list[str]]:
        """Phrases per language: the configured file, or the captions of this stage's input."""
        if self.config.phrase_bank:
            with open(self.config.phrase_bank, encoding="utf-8") as fh:
                lines = [line.strip() for line in fh if line.strip()]
            lid = LanguageIdentifier()
            bank: dict[str, list[str]] = {}
            for line in lines:
                bank.setdefault(detect_language(line, lid, 0.5)[0], []).append(line)
            return bank
        cols = read_columns(self.inputs, ["caption", "lang"])
        bank = {}
        for caption, lang in zip(cols["caption"], cols["lang"]):
            bank.setdefault(lang, []).append(caption)
        return bank

    @cached_property
    def _lid(self) -> LanguageIdentifier:
        return LanguageIdentifier()

    @cached_property
    def _cache(self) -> GenerationCache:
        return GenerationCache(self.work_dir if self.config.cache and self.work_dir else None)

    def preflight(self) -> list[str]:
        from vtcurate.models.availability import clip_problem, generator_problem

        if self.config.backend == "retrieval":
            problem = clip_problem(self.config.clip)
            return [f"aux_caption.clip: {problem}"] if problem else []
        problem = generator_problem(self.config.llm, "caption")
        return [f"aux_caption.llm: {problem}"] if problem else []

    def setup(self) -> None:
        _ = self._prompts, self._generators

    def teardown(self) -> None:
        if "_generators" in vars(self):
            for gen in set(self._generators.values()):
                gen.close()
            del self._generators

    def provenance(self) -> dict:
        cfg = self.config
        out = {"backend": cfg.backend, "frames": cfg.frames, "languages": cfg.languages}
        if cfg.backend == "retrieval":
            from vtcurate.models.clip import weights_info

            clip = weights_info(cfg.clip)
            out.update(clip=clip, random_weights=clip["random_weights"],
                       phrase_bank=cfg.phrase_bank or "the run's kept captions")  # fmt: skip
        else:
            out["llm"] = cfg.llm.model_dump(exclude={"api_key_env"})
            out["prompts"] = {lang: prompt_sha(p) for lang, p in self._prompts.items()}
        return out

    def _chat(self, lang: str, jpeg: bytes, caption: str) -> Chat:
        if self.config.backend == "retrieval":  # the text part names the caption not to repeat
            return [{"role": "user", "content": [image_part(jpeg), {"type": "text", "text": caption}]}]
        if self.config.backend == "transformers":
            return [{"role": "user", "content": [image_part(jpeg)]}]
        return render(self._prompts[lang], images=[image_part(jpeg)])

    def _check(self, lang: str, raw: str | None) -> tuple[str, str | None]:
        text = clean_output(raw)
        if len(text) > self.config.max_chars:
            return text, "too_long"
        # (an image-to-text model writes its training language: a zh caption it cannot write fails
        # as wrong_language rather than being stored as Chinese)
        return text, output_problem(text, text, lang, self._lid, _AUX_RULES)

    def __call__(self, batch: pa.Table) -> pa.Table:
        cfg = self.config
        frames = batch.column("frames").to_pylist()
        captions = batch.column("caption").to_pylist()
        sampling = sampling_of(cfg.llm)
        sampling_json = json.dumps(sampling.as_dict(), sort_keys=True)
        n = batch.num_rows
        results: list[list[dict]] = [[] for _ in range(n)]
        failed = [0] * n
        problems: list[set[str]] = [set() for _ in range(n)]
        for lang in cfg.languages:
            gen = self._generators[lang]
            sha = prompt_sha(self._prompts[lang]) if lang in self._prompts else None
            no_prompt = cfg.backend in ("openai", "vllm") and sha is None
            jobs, requests = [], []
            for i, jpegs in enumerate(frames):
                picks = range(len(jpegs or [])) if cfg.frames == "all" else [len(jpegs) // 2] if jpegs else []
                if no_prompt:  # nothing to ask the VLM in this language
                    failed[i] += len(picks)
                    problems[i].add("no_prompt_for_language")
                    continue
                for f in picks:
                    key = digest("aux", jpegs[f], captions[i], lang, gen.model_id, sha, sampling_json)
                    jobs.append((i, f))
                    requests.append(Request(key, self._chat(lang, jpegs[f], captions[i] or "")))
            outcomes = generate_validated(
                gen, requests, sampling, lambda _j, raw, lang=lang: self._check(lang, raw),
                self._cache, 1 if cfg.backend == "retrieval" else cfg.attempts, cfg.retry_temperature,
            )  # fmt: skip
            for (i, f), o in zip(jobs, outcomes):
                if o.text is not None:
                    results[i].append({"frame": f, "lang": lang, "text": o.text})
                else:
                    failed[i] += 1
                    problems[i].add(o.problem or "unknown")
        status = [
            "ok" if not failed[i] else f"failed:{failed[i]}:{','.join(sorted(problems[i]))}" for i in range(n)
        ]
        model_ids = ",".join(sorted({g.model_id for g in self._generators.values()}))
        shas = ",".join(f"{lang}:{prompt_sha(p)}" for lang, p in sorted(self._prompts.items())) or None
        batch = set_column(batch, "aux_captions", results, AUX_TYPE)
        batch = set_column(batch, "aux_status", status, pa.string())
        batch = set_column(batch, "aux_model", [model_ids] * n, pa.string())
        batch = set_column(batch, "aux_prompt_sha", [shas] * n, pa.string())
        return with_decisions(batch, [None] * n, [None] * n)
