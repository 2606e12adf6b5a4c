"""Preflight: everything a run's stages will need, resolved before the first stage starts, so a
missing weight, package, endpoint or GPU fails in seconds, naming its config key, instead of after
three stages of work.  Files a config names are checked when it loads (`config.check_paths`)."""

from __future__ import annotations

from vtcurate.config import FLOW, TRAIN, PipelineConfig
from vtcurate.errors import UserError


class PreflightError(UserError):
    """Something a stage of the run needs is missing here."""


def _gpu_problems(config: PipelineConfig, stages: list[str], local_gpus: bool) -> list[str]:
    from vtcurate.stages import build_stage

    if local_gpus:
        return []
    return [f"{name}: needs a GPU (its device settings ask for cuda), and torch sees none here"
            for name in stages if build_stage(name, config).resources.num_gpus > 0]  # fmt: skip


def problems(config: PipelineConfig, stages: list[str], *, check_gpus: bool = True) -> list[str]:
    """What the `stages` of `config` lack here, each naming its key; empty when all is there.
    GPUs are checked where this process is where the work runs (`check_gpus`: not for a remote
    cluster, whose nodes the runner checks before any work)."""
    from vtcurate.stages import build_stage

    found = [p for name in stages if name in FLOW for p in build_stage(name, config).preflight()]
    if TRAIN in stages:
        from vtcurate.models.availability import clip_problem

        problem = clip_problem(config.train.model.clip)
        found += [f"train.model.clip: {problem}"] if problem else []
    if check_gpus:
        import torch

        found += _gpu_problems(config, [s for s in stages if s in FLOW], torch.cuda.is_available())
    return found


def preflight(config: PipelineConfig, stages: list[str], *, check_gpus: bool = True) -> None:
    found = problems(config, stages, check_gpus=check_gpus)
    if found:
        raise PreflightError("preflight: " + "; ".join(found))
