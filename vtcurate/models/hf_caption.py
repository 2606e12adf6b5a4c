"""`TransformersImageCaptioner`: an image-to-text model run in-process by Hugging Face transformers
(aux_caption).

It loads BLIP, GIT, a ViT-GPT2 `VisionEncoderDecoderModel`, ... from a directory through
`AutoModelForImageTextToText` + `AutoImageProcessor` + `AutoTokenizer`.  Loading, batching, sampling
and provenance are hf_common's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
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

# Captioners whose text decoder takes a text prompt to continue ("a photo of"); others ignore the text.
CONDITIONAL_CAPTIONERS = frozenset({"blip", "git"})


class TransformersImageCaptioner(CachedModel):
    """Captions the image of each chat with an image-to-text model from a local directory.

    Each request's first image part is captioned (further images are ignored; `extra` says how many
    were given).  The request's text is used as the caption's prompt ("a picture of") only for
    conditional captioners (model types in CONDITIONAL_CAPTIONERS: BLIP, GIT) and is ignored by the
    others (VisionEncoderDecoder ViT-GPT2 and the like); the prompt is not part of the returned text.
    `max_tokens` is capped by the room left in the text decoder's position table (finish_reason
    "length" then), rather than failing the request.
    Chat VLMs (LLaVA, SmolVLM, Qwen-VL) are out of scope here: serve them through vLLM instead.
    """

    def __init__(self, model: str | Path, *, device: str = "auto", batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(model).expanduser().resolve()
        if not self.path.is_dir():
            raise UserError(f"captioner directory not found: {self.path}")
        self.model_id = self.path.name
        self.batch_size = batch_size
        self._loaded: Loaded | None = load_cached("captioner", self.path, resolve_device(device), self._load)
        self.load_s = self._loaded.load_s
        cfg = self._loaded.model.config
        self.model_type = cfg.model_type
        self.conditional = self.model_type in CONDITIONAL_CAPTIONERS
        text_cfg = getattr(cfg, "text_config", None) or getattr(cfg, "decoder", None) or cfg
        gc = self._loaded.model.generation_config
        tok = self._loaded.tokenizer
        self._eos = eos_ids(gc.eos_token_id, getattr(text_cfg, "eos_token_id", None), tok.eos_token_id)
        if self.model_type == "blip":  # BLIP's decoder stops at [SEP]
            self._eos |= eos_ids(getattr(text_cfg, "sep_token_id", None))
        # The text decoder's position table bounds prompt + caption (GPT-2 calls it n_positions).
        positions = getattr(text_cfg, "max_position_embeddings", None) or getattr(
            text_cfg, "n_positions", None
        )
        self.max_positions = int(positions) if positions else None

    def _load(self, device: str) -> Loaded:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        loaded = Loaded(None, None, None, device, dtype_name(device))
        model = AutoModelForImageTextToText.from_pretrained(str(self.path), dtype=loaded.torch_dtype)
        model.to(device=device, dtype=loaded.torch_dtype).eval()
        tok = AutoTokenizer.from_pretrained(str(self.path))
        proc = AutoImageProcessor.from_pretrained(str(self.path))
        gc = model.generation_config
        if gc.pad_token_id is None:
            gc.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        loaded.model, loaded.tokenizer, loaded.image_processor = model, tok, proc
        return loaded

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        if not chats:
            return []
        gc = generation_config(self.loaded.model.generation_config, sampling)
        results: list[Generation | None] = [None] * len(chats)
        images: dict[int, Any] = {}
        counts: dict[int, int] = {}
        groups: dict[str, list[int]] = {}
        for i, chat in enumerate(chats):
            try:
                jpegs, text = _image_parts(chat)
                if not jpegs:
                    raise ValueError("the request has no image part")
                images[i] = _decode_image(jpegs[0])
                counts[i] = len(jpegs)
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad image
                results[i] = Generation(text=None, error=error_text(exc))
                continue
            # One prompt per sub-batch: no padding, so the prompt's tokens line up across the batch.
            groups.setdefault(text.strip() if self.conditional else "", []).append(i)
        prompt_of = {i: prompt for prompt, idx in groups.items() for i in idx}

        def run(part: list[int]) -> list[Generation]:
            return self._generate_batch([images[i] for i in part], prompt_of[part[0]], gc)

        out = generate_batches(results, groups.values(), run, batch_size=self.batch_size, seed=sampling.seed,
                               device=self.loaded.device)  # fmt: skip
        for i, n in counts.items():
            if n > 1:
                out[i] = dataclasses.replace(out[i], extra={**out[i].extra, "images_given": n})
        return out

    def _prompt_ids(self, prompt: str) -> tuple[list[int] | None, int]:
        """The decoder's prompt ids for `prompt`, and how many leading tokens of the output they take."""
        tok = self.loaded.tokenizer
        if self.model_type == "blip":
            if not prompt:
                return None, 1  # BLIP starts from [BOS]
            ids = tok(prompt)["input_ids"]  # [CLS] prompt [SEP]: BLIP swaps CLS for BOS and drops SEP
            return ids, len(ids) - 1
        if self.model_type == "git":
            if not prompt:
                return None, 1  # GIT starts from its BOS ([CLS])
            ids = [tok.cls_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
            return ids, len(ids)
        return None, 1  # encoder-decoders start from decoder_start_token_id

    def _generate_batch(self, pil_images: Sequence[Any], prompt: str, gc: Any) -> list[Generation]:
        import torch

        loaded = self.loaded
        pixels = loaded.image_processor(images=list(pil_images), return_tensors="pt")["pixel_values"]
        inputs: dict[str, Any] = {"pixel_values": pixels.to(loaded.device, dtype=loaded.torch_dtype)}
        prompt_ids, skip = self._prompt_ids(prompt)
        if self.max_positions is not None:
            room = self.max_positions - (len(prompt_ids) if prompt_ids is not None else 1)
            if room < 1:
                raise ValueError(f"the prompt fills the decoder's {self.max_positions} positions")
            if gc.max_new_tokens > room:  # a caption cannot outgrow the decoder; cut, do not fail
                gc = copy.deepcopy(gc)
                gc.max_new_tokens = room
        if prompt_ids is not None:
            ids = torch.tensor([prompt_ids] * len(pil_images), device=loaded.device)
            inputs["input_ids"] = ids
            inputs["attention_mask"] = torch.ones_like(ids)
        with torch.inference_mode():
            out = loaded.model.generate(**inputs, generation_config=gc)
        return [decoded(loaded.tokenizer, row, self._eos) for row in out[:, skip:].tolist()]

    def provenance(self) -> dict:
        return {
            **provenance("transformers-captioner", self.path, self.loaded),
            "model": self.model_id,
            "model_type": self.model_type,
            "uses_prompt": self.conditional,
            "batch_size": self.batch_size,
        }


def _image_parts(chat: Chat) -> tuple[list[bytes], str]:
    jpegs: list[bytes] = []
    texts: list[str] = []
    for msg in chat:
        if msg.get("role") == "system":
            continue  # a system prompt is an instruction for a chat model, never a caption prefix
        content = msg["content"]
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content:
            if part.get("type") == "image":
                jpegs.append(part["image"])
            elif part.get("type") == "text":
                texts.append(part.get("text", ""))
    return jpegs, " ".join(t for t in texts if t)


def _decode_image(jpeg: bytes) -> Any:
    from PIL import Image

    from vtcurate.video.frames import decode_jpeg

    return Image.fromarray(decode_jpeg(jpeg))

