"""One rule for when a worker holds a GPU, read by every stage that runs a generator."""

from __future__ import annotations

import pytest

from vtcurate.config import AuxCaptionConfig, LLMBackendConfig, RewriteConfig
from vtcurate.models.devices import generator_wants_gpu
from vtcurate.stages.aux_caption import AuxCaptionStage
from vtcurate.stages.rewrite import RewriteStage


@pytest.mark.parametrize(
    ("llm", "gpu"),
    [
        ({"backend": "transformers", "device": "cuda"}, True),  # the model is in the worker
        ({"backend": "transformers", "device": "cpu"}, False),
        ({"backend": "vllm", "device": "cuda"}, True),  # the worker starts `vllm serve`
        ({"backend": "vllm", "device": "cuda", "base_url": "http://gpu-box:8000/v1"}, False),  # remote
        ({"backend": "openai", "device": "cuda", "base_url": "http://gpu-box:8000/v1"}, False),
    ],
)
def test_a_worker_holds_a_gpu_only_for_a_model_it_runs(llm, gpu):
    cfg = LLMBackendConfig(**llm)
    assert generator_wants_gpu(cfg) is gpu
    assert RewriteStage(RewriteConfig(llm=cfg)).resources.num_gpus == float(gpu)
    aux = AuxCaptionConfig(backend=llm["backend"], llm={k: v for k, v in llm.items() if k != "backend"})
    assert AuxCaptionStage(aux).resources.num_gpus == float(gpu)
