"""One rule for when a worker holds a GPU, read by every stage that runs a generator; one choice of
device and precision for every model."""

from __future__ import annotations

import pytest

from vtcurate.config import AuxCaptionConfig, RewriteConfig
from vtcurate.errors import UserError
from vtcurate.models.devices import DTYPES, autocast, generator_wants_gpu, precision, resolve_device
from vtcurate.stages.aux_caption import AuxCaptionStage
from vtcurate.stages.rewrite import RewriteStage


@pytest.mark.parametrize(
    ("llm", "gpu"),
    [
        ({"backend": "transformers", "model": "m", "device": "cuda"}, True),  # the model is in the worker
        ({"backend": "transformers", "model": "m", "device": "cpu"}, False),
        ({"backend": "vllm", "model": "m", "device": "cuda"}, True),  # the worker starts `vllm serve`
        ({"backend": "vllm", "model": "m", "device": "cuda", "base_url": "http://gpu-box:8000/v1"}, False),
        ({"backend": "openai", "model": "m", "base_url": "http://gpu-box:8000/v1"}, False),  # remote
    ],
)
def test_a_worker_holds_a_gpu_only_for_a_model_it_runs(llm, gpu):
    cfg = RewriteConfig(llm=llm)
    assert generator_wants_gpu(cfg.llm) is gpu
    assert RewriteStage(cfg).resources.num_gpus == float(gpu)
    aux = AuxCaptionConfig(backend=llm["backend"], llm={k: v for k, v in llm.items() if k != "backend"})
    assert AuxCaptionStage(aux).resources.num_gpus == float(gpu)


def test_auto_precision_is_bf16_on_cuda_and_fp32_elsewhere():
    assert precision("cuda") == precision("cuda:1") == "bf16"
    assert precision("cpu") == "fp32"
    assert precision("cpu", "bf16") == "bf16" and precision("cuda", "fp32") == "fp32"
    assert DTYPES[precision("cuda")] == "bfloat16"
    with pytest.raises(ValueError, match="precision"):
        precision("cpu", "int8")


def test_device_errors_name_the_key(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match=r"^train\.device: cuda asked for"):
        resolve_device("cuda", "train.device")
    with pytest.raises(UserError, match="device must be auto, cpu or cuda"):
        resolve_device("tpu")


def test_autocast_only_for_half_precisions():
    import torch

    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
