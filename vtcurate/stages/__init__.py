"""Pipeline stages, by name.  Each module holds one stage; see base.py for the contract."""

from __future__ import annotations

from vtcurate.stages.base import Stage


def stage_classes() -> dict[str, type[Stage]]:
    from vtcurate.stages.aux_caption import AuxCaptionStage
    from vtcurate.stages.clip_filter import ClipFilterStage
    from vtcurate.stages.dedup import DedupStage
    from vtcurate.stages.ingest import IngestStage
    from vtcurate.stages.keyframes import KeyframesStage
    from vtcurate.stages.langid import LangIdStage
    from vtcurate.stages.rewrite import RewriteStage
    from vtcurate.stages.shard import ShardStage

    return {
        cls.name: cls
        for cls in (
            IngestStage,
            LangIdStage,
            KeyframesStage,
            ClipFilterStage,
            DedupStage,
            RewriteStage,
            AuxCaptionStage,
            ShardStage,
        )
    }


def build_stage(name: str, config) -> Stage:
    """The stage called `name`, configured from the run config's section of the same name."""
    return stage_classes()[name](getattr(config, name))
