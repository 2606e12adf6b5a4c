"""Pipeline stages, by name.  Each module holds one stage; see base.py for the contract, and
vtcurate.config.STAGES for the ordered registry that names them."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from vtcurate.config import STAGES
from vtcurate.stages.base import Stage


def stage_class(name: str) -> type[Stage]:
    entry = next(e for e in STAGES if e.name == name)
    module, _, cls = entry.impl.partition(":")
    return getattr(import_module(module), cls)


def stage_classes() -> dict[str, type[Stage]]:
    return {e.name: stage_class(e.name) for e in STAGES}


@cache
def frames_stage() -> str:
    """The stage that makes the key-frames: its kept partitions are the run's one frame store."""
    from vtcurate.storage import FRAMES

    return next(e.name for e in STAGES if FRAMES in stage_class(e.name).output_columns)


def build_stage(name: str, config) -> Stage:
    """The stage called `name`, configured from the run config's section of the same name."""
    return stage_class(name)(getattr(config, name))
