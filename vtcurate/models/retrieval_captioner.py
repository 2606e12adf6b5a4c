"""The cheap CPU captioner: CLIP picks the phrases of a bank that best match an image.

In the spirit of CLIP-interrogator: embed a bank of phrases (a configured file, or the run's own
kept captions) once, score each image against all of them, and join the `top_k` best into a
caption.  A chat's text part, when given, is the clip's own caption and is never picked, so a
clip's auxiliary caption cannot simply repeat it.  Implements the Generator protocol.
"""

from __future__ import annotations

import numpy as np

from vtcurate.config import ClipModelSpec
from vtcurate.models.clip import load_clip
from vtcurate.models.generation import Chat, Generation, Sampling

MAX_BANK = 50_000  # phrases embedded per language; a larger bank is sampled down evenly


class RetrievalCaptioner:
    def __init__(self, spec: ClipModelSpec, phrases: list[str], top_k: int, lang: str) -> None:
        phrases = sorted({" ".join(p.split()) for p in phrases if p and p.strip()})
        if len(phrases) > MAX_BANK:
            phrases = phrases[:: len(phrases) // MAX_BANK + 1]
        self.clip = load_clip(spec)
        self.phrases = phrases
        self.top_k = top_k
        self.lang = lang
        self.model_id = f"retrieval:{self.clip.model_id}:{lang}:{len(phrases)}"
        self.bank = self.clip.embed_texts(phrases) if phrases else np.zeros((0, self.clip.embed_dim))

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        images, exclude = [], []
        for chat in chats:
            parts = chat[-1]["content"]
            images.append(next(p["image"] for p in parts if p["type"] == "image"))
            exclude.append(" ".join(p.get("text", "") for p in parts if p["type"] == "text").strip())
        if not self.phrases:
            return [Generation(None, f"empty phrase bank for {self.lang}") for _ in chats]
        sims = self.clip.embed_images(images) @ self.bank.T
        out = []
        for row, own in zip(sims, exclude):
            picked = [self.phrases[j] for j in np.argsort(-row) if self.phrases[j] != own][: self.top_k]
            sep = "；" if self.lang == "zh" else "; "
            out.append(Generation(sep.join(picked) if picked else None, None if picked else "no phrase"))
        return out

    def provenance(self) -> dict:
        return {"backend": "retrieval", "clip": self.clip.provenance(), "phrases": len(self.phrases),
                "random_weights": self.clip.random_weights}  # fmt: skip

    def close(self) -> None:
        pass
