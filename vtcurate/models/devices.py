"""Which device a model runs on, decided once so that the scheduler and the loader agree."""

from __future__ import annotations

from vtcurate.errors import UserError


def wants_gpu(device: str) -> bool:
    """Whether a worker using `device` needs a GPU from the scheduler: `cuda`, or `auto` where
    this process (the driver) sees CUDA; a cluster's GPU nodes are assumed alike."""
    if device == "cpu":
        return False
    if device == "cuda":
        return True
    import torch

    return torch.cuda.is_available()


def generator_wants_gpu(llm) -> bool:
    """Whether a worker holds a GPU for a generator (`LLMBackendConfig`): for its in-process model
    or for the vLLM server it starts; a remote endpoint (`base_url`) needs none here."""
    local = llm.backend == "transformers" or (llm.backend == "vllm" and not llm.base_url)
    return local and wants_gpu(llm.device)


def resolve_device(device: str) -> str:
    """`auto`, `cpu` or `cuda` as the device a model is loaded on, in this worker."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda asked for, but torch sees no CUDA device")
    return device
