"""Model throughput on CPU: language ID, CLIP scoring by batch size, LLM rewriting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench.common import Row, median_time, ratio_row

CAPTIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "captions"


def _captions(limit: int = 2000) -> list[str]:
    texts = []
    for path in sorted(CAPTIONS.glob("*.jsonl")) if CAPTIONS.is_dir() else []:
        texts += [
            json.loads(line)["caption"] for line in path.read_text("utf-8").splitlines() if line.strip()
        ]
    if not texts:
        texts = ["a red circle moves from left to right", "一个红色的圆从左向右移动"] * 500
    return texts[:limit]


def langid(reps: int) -> list[Row]:
    """The langid stage's scoring (normalise, lid.176, Han rule, Lingua on short captions, OpenCC) vs a
    bare lid.176 call; then short captions with and without the second opinion (bench/langid_short)."""
    from bench.langid_short import short_captions
    from vtcurate.config import LangIdConfig
    from vtcurate.models.langid import LanguageIdentifier
    from vtcurate.stages.langid import LangIdStage

    texts = _captions()
    stage = LangIdStage(LangIdConfig())
    stage.setup()
    lid = LanguageIdentifier()
    bare = median_time(lambda: [lid.detect(t) for t in texts], reps)
    full = median_time(lambda: [stage.score(t) for t in texts], reps)
    name, note = f"stage scoring, {len(texts)} real captions", "ratio < 1: the cost of normalisation + rules"
    return [
        ratio_row(
            "langid", name, len(texts) / full, "captions/s", "bare lid.176", len(texts) / bare, note=note
        )
    ] + short_captions(reps)


def clip_scoring(reps: int, batch_sizes=(1, 8, 32), name: str = "ViT-B-32") -> list[Row]:
    """Frames/s of CLIP image embedding on CPU (random weights: speed does not depend on them)."""
    import cv2
    import torch

    from vtcurate.config import ClipModelSpec
    from vtcurate.models.clip import load_clip

    torch.set_num_threads(2)
    model = load_clip(ClipModelSpec(name=name, device="cpu"))
    rng = np.random.default_rng(0)
    jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (224, 398, 3), np.uint8))[1].tobytes()
    rates = {}
    for bs in batch_sizes:
        t = median_time(lambda bs=bs: model.embed_images([jpeg] * bs), reps)
        rates[bs] = bs / t
    rows = [
        ratio_row(
            "clip_filter",
            f"{name} image embedding, batch {bs} (2 threads, fp32)",
            rate,
            "frames/s",
            "batch 1",
            rates[batch_sizes[0]],
        )
        for bs, rate in rates.items()
    ]
    texts = _captions(64)
    t = median_time(lambda: model.embed_texts(texts), reps)
    rows.append(
        Row("clip_filter", f"{name} text embedding, batch {len(texts)}", len(texts) / t, "captions/s")
    )
    if torch.cuda.is_available():
        rows += _clip_gpu(name, jpeg, reps, rates[batch_sizes[0]])
    return rows


def _clip_gpu(name: str, jpeg: bytes, reps: int, cpu_rate: float) -> list[Row]:
    """bf16, channels-last, large batches; pixels prepared once so the GPU is what is timed."""
    import torch
    from PIL import Image

    from vtcurate.config import ClipModelSpec
    from vtcurate.models.clip import load_clip
    from vtcurate.video.frames import decode_jpeg

    model = load_clip(ClipModelSpec(name=name, device="cuda", precision="bf16"))
    net = model.model.to(memory_format=torch.channels_last)
    pixel = model.preprocess(Image.fromarray(decode_jpeg(jpeg)))
    rows = []
    for bs in (64, 256, 1024):
        batch = pixel.unsqueeze(0).repeat(bs, 1, 1, 1).to("cuda").to(memory_format=torch.channels_last)

        def step(batch=batch) -> None:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                net.encode_image(batch)
            torch.cuda.synchronize()

        t = median_time(step, reps)
        rows.append(ratio_row("clip_filter GPU", f"{name} bf16 channels-last, batch {bs}", bs / t, "frames/s",
                              "CPU batch 1", cpu_rate))  # fmt: skip
    return rows


def llm_rewrite(reps: int) -> list[Row]:
    """SmolLM2 (transformers, CPU): output tokens/s one caption at a time vs batches of 8."""
    from vtcurate.models.generation import Sampling
    from vtcurate.models.hf_chat import TransformersChatLM
    from vtcurate.text.prompts import load_prompts, render

    prompts = load_prompts(None, "rewrite.yaml")
    captions = [c for c in _captions(2000) if c.isascii()][:8]
    chats = [render(prompts["en"], c) for c in captions]
    sampling = Sampling(max_tokens=40)
    t0 = time.perf_counter()
    lm = TransformersChatLM(device="cpu", batch_size=8)
    _ = lm.loaded  # loaded on first use
    load = time.perf_counter() - t0
    out = {}
    for label, bs in (("single", 1), ("batch of 8", 8)):
        lm.batch_size = bs
        tokens: list[int] = []

        def call(tokens=tokens) -> None:
            tokens.append(sum(g.output_tokens for g in lm.generate(chats, sampling)))

        t = median_time(call, reps, warmup=0)
        out[label] = (float(np.median(tokens)) / t, len(chats) / t)
    rows = [
        ratio_row("rewrite", f"SmolLM2-135M transformers CPU, {label}", rates[k], unit, "single",
                  out["single"][k])
        for k, unit in enumerate(("output tokens/s", "captions/s"))
        for label, rates in out.items()
    ]  # fmt: skip
    rows.append(Row("rewrite", "SmolLM2 GGUF load (dequantise)", load, "s"))
    import torch

    if torch.cuda.is_available():
        rows += _llm_gpu(chats * 8, sampling, reps)
    return rows


def _llm_gpu(chats: list, sampling, reps: int) -> list[Row]:
    """On CUDA: vLLM in-process (where it is installed) against Hugging Face generate, same GPU."""
    import importlib.util
    import tempfile

    from vtcurate.models.gguf_export import export_safetensors, smollm2_gguf_path
    from vtcurate.models.hf_chat import TransformersChatLM

    model_dir = export_safetensors(smollm2_gguf_path(), Path(tempfile.gettempdir()) / "vtcurate-smollm2")
    hf = TransformersChatLM(model_dir, device="cuda", batch_size=len(chats))
    tokens: list[int] = []
    t = median_time(lambda: tokens.append(sum(g.output_tokens for g in hf.generate(chats, sampling))), reps)
    hf_rate = tokens[-1] / t
    rows = [Row("rewrite GPU", f"HF generate, batch {len(chats)}", hf_rate, "output tokens/s")]
    if importlib.util.find_spec("vllm"):
        from vtcurate.models.vllm_offline import VLLMOffline

        engine = VLLMOffline(str(model_dir), batch_size=len(chats))
        out: list[int] = []
        t = median_time(
            lambda: out.append(sum(g.output_tokens for g in engine.generate(chats, sampling))), reps
        )
        name = f"vLLM offline, batch {len(chats)}"
        rows.append(ratio_row("rewrite GPU", name, out[-1] / t, "output tokens/s", "HF generate", hf_rate))
    return rows
