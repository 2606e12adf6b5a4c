"""Which device a model runs on, decided once so that the scheduler and the loader agree."""

from __future__ import annotations


def wants_gpu(device: str) -> bool:
    """Whether a worker using `device` needs a GPU from the scheduler: `cuda`, or `auto` where
    this process (the driver) sees CUDA; a cluster's GPU nodes are assumed alike."""
    if device == "cpu":
        return False
    if device == "cuda":
        return True
    import torch

    return torch.cuda.is_available()
