"""GPU paths: run wherever CUDA is present, skip cleanly (saying why) elsewhere."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import torch

from vtcurate.config import ClipModelSpec, LLMBackendConfig
from vtcurate.models.generation import Sampling

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)"),
]


def test_clip_on_cuda_uses_bf16_and_matches_cpu():
    from vtcurate.models.clip import ClipModel

    jpegs = [cv2.imencode(".jpg", np.full((96, 96, 3), c, np.uint8))[1].tobytes() for c in (30, 120, 220)]
    gpu = ClipModel(ClipModelSpec(name="vtc-tiny-vit", device="cuda"))
    cpu = ClipModel(ClipModelSpec(name="vtc-tiny-vit", device="cpu"))
    assert gpu.precision == "bf16" and gpu.device == "cuda"
    a, b = gpu.embed_images(jpegs), cpu.embed_images(jpegs)
    assert np.allclose(a, b, atol=0.05)  # same seeded weights; bf16 rounding only


def test_transformers_lm_on_cuda():
    from vtcurate.models.hf_generate import TransformersChatLM

    lm = TransformersChatLM(device="cuda", batch_size=4)
    gens = lm.generate([[{"role": "user", "content": "Describe a red ball in one sentence."}]] * 2,
                       Sampling(max_tokens=16))  # fmt: skip
    assert all(g.ok and g.output_tokens > 0 for g in gens)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not in this environment")
def test_vllm_offline_in_process(tmp_path):
    from vtcurate.models.backends import open_generator
    from vtcurate.models.gguf_export import export_safetensors, smollm2_gguf_path

    model = export_safetensors(smollm2_gguf_path(), tmp_path / "smollm2")
    gen = open_generator(LLMBackendConfig(backend="vllm", vllm_mode="offline", model=str(model)), "chat")
    try:
        out = gen.generate([[{"role": "user", "content": "Say hello."}]] * 3, Sampling(max_tokens=8))
    finally:
        gen.close()
    assert len(out) == 3 and all(g.ok for g in out)
