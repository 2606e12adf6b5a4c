"""Which device and precision a model runs in: decided here once, so that the scheduler, the
loaders (CLIP, transformers, TransNetV2) and the trainer agree.

torch is imported inside the functions: stages import this module to declare their resources.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from vtcurate.errors import UserError

if TYPE_CHECKING:
    import torch

# precision name -> torch dtype name
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def wants_gpu(device: str) -> bool:
    """Whether a worker using `device` needs a GPU from the scheduler: `cuda`, or `auto` where
    this process (the driver) sees CUDA; a cluster's GPU nodes are assumed alike."""
    if device == "cpu":
        return False
    if device == "cuda":
        return True
    import torch

    return torch.cuda.is_available()


def generator_wants_gpu(llm: Any) -> bool:
    """Whether a worker holds a GPU for a generator (an `LLMBackendConfig`): for its in-process
    model or for the vLLM server it starts; a remote endpoint needs none here."""
    return llm.local_device is not None and wants_gpu(llm.local_device)


def resolve_device(device: str, what: str = "device") -> str:
    """`auto`, `cpu` or `cuda` as the device a model is loaded on, in this worker (`auto`: CUDA
    where torch sees it).  `what` names the config key in the error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"{what} must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{what}: cuda asked for, but torch sees no CUDA device")
    return device


def precision(device: str, requested: str = "auto") -> str:
    """`fp32`, `fp16` or `bf16` for a model on `device` (`cuda`, `cuda:N` or `cpu`): `auto` is bf16
    on CUDA and fp32 elsewhere; anything else is taken as asked."""
    if requested == "auto":
        return "bf16" if device.split(":")[0] == "cuda" else "fp32"
    if requested not in DTYPES:
        raise ValueError(f"precision must be auto, {', '.join(DTYPES)}; got {requested!r}")
    return requested


def torch_dtype(prec: str) -> torch.dtype:
    """The torch dtype of a precision name (`bf16` -> torch.bfloat16)."""
    import torch

    return getattr(torch, DTYPES[prec])


def autocast(device: str, prec: str) -> AbstractContextManager:
    """Mixed precision on `device` for a half precision (fp16, bf16); off for fp32."""
    import torch

    kind = device.split(":")[0]
    if prec in ("fp16", "bf16"):
        return torch.autocast(kind, dtype=torch_dtype(prec))
    return torch.autocast(kind, enabled=False)
