"""Typed run configuration: YAML files validated by pydantic models.

Every model forbids unknown keys so that a typo fails before any work starts, naming the key.
`--set stage.key=value` overrides are applied to the raw mapping before validation, so they are
validated exactly like keys written in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vtcurate.errors import UserError

# The full flow, in order.  Stage directories are numbered by their place here, so a stage keeps
# its directory name whichever subset of the flow a run executes.
FLOW: tuple[str, ...] = (
    "ingest",
    "langid",
    "keyframes",
    "clip_filter",
    "dedup",
    "rewrite",
    "aux_caption",
    "shard",
)
IMPLEMENTED: tuple[str, ...] = ("ingest", "langid", "keyframes", "shard")


class ConfigError(UserError, ValueError):
    """A configuration that cannot run; the message names the offending key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RayConfig(Strict):
    address: str | None = Field(
        None, description="Ray cluster to join (also RAY_ADDRESS); none starts an embedded one"
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs for the embedded cluster (default: all of this machine)"
    )
    reserve_cpus: float = Field(
        1.0,
        ge=0,
        description="CPUs kept free of actor pools for Ray Data's own tasks (2-CPU deadlock)",
    )


class IngestConfig(Strict):
    min_duration: float = Field(0.5, ge=0, description="shortest clip span kept, seconds")
    max_duration: float = Field(3600.0, gt=0, description="longest clip span kept, seconds")
    probe_backends: list[Literal["decord", "pyav"]] = Field(
        ["decord", "pyav"], min_length=1, description="probe order; later ones are fallbacks"
    )

    @model_validator(mode="after")
    def _durations(self) -> IngestConfig:
        if self.min_duration > self.max_duration:
            raise ValueError("min_duration must not exceed max_duration")
        return self


class LangIdConfig(Strict):
    languages: list[str] = Field(["en", "zh"], min_length=1, description="languages kept")
    min_confidence: dict[str, float] = Field(
        {"en": 0.3, "zh": 0.5}, description="per-language minimum lang_score"
    )
    zh_script_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Han share of word units at or above which a caption is Chinese",
    )
    min_length: dict[str, int] = Field(
        {"en": 3, "zh": 4}, description="minimum length: words (en) or characters (zh)"
    )
    max_length: dict[str, int] = Field(
        {"en": 120, "zh": 200}, description="maximum length: words (en) or characters (zh)"
    )
    traditional_to_simplified: bool = Field(True, description="OpenCC t2s on Chinese captions")
    boilerplate: list[str] = Field(
        default_factory=list,
        description="extra regular expressions removed from captions (on top of the built-ins)",
    )

    @model_validator(mode="after")
    def _per_language(self) -> LangIdConfig:
        for key in ("min_confidence", "min_length", "max_length"):
            missing = [lang for lang in self.languages if lang not in getattr(self, key)]
            if missing:
                raise ValueError(f"{key} has no value for language(s) {missing}")
        return self


class KeyframesConfig(Strict):
    num_frames: int = Field(8, ge=1, le=64, description="key-frames per clip")
    mode: Literal["exact", "iframe"] = Field(
        "exact", description="exact: middle of each segment; iframe: nearest intra frame in it"
    )
    short_side: int = Field(224, ge=16, le=4096, description="resize so the short side is this")
    jpeg_quality: int = Field(90, ge=10, le=100)
    backends: list[Literal["decord", "pyav"]] = Field(["decord", "pyav"], min_length=1)
    threads: int = Field(1, ge=0, description="decoder threads per worker (0: library default)")


class ShardConfig(Strict):
    max_samples: int = Field(1000, ge=1, description="samples per tar before rolling over")
    max_bytes: int = Field(1_000_000_000, ge=1024, description="bytes per tar before rolling over")
    val_fraction: float = Field(0.1, ge=0, le=1, description="share of clips in the val split")
    split_salt: str = Field("", description="salt of the clip-id hash that assigns splits")


class ReportConfig(Strict):
    enabled: bool = Field(True, description="write report/index.html at the end of `vtcurate run`")
    examples_per_reason: int = Field(3, ge=0, le=50, description="examples shown per drop reason")
    samples: int = Field(6, ge=0, le=100, description="kept samples shown with their key-frames")
    answer_key: str | None = Field(
        None,
        description="answer key (jsonl: row, planted, expect_stage, expect_reason); "
        "default: answer_key.jsonl beside the manifest, if present",
    )


class PipelineConfig(Strict):
    name: str = "run"
    runner: Literal["local", "ray"] = "ray"
    partition_rows: int = Field(64, ge=1, description="rows per partition (unit of work/resume)")
    stages: list[str] = Field(list(IMPLEMENTED), min_length=1)
    ray: RayConfig = RayConfig()
    ingest: IngestConfig = IngestConfig()
    langid: LangIdConfig = LangIdConfig()
    keyframes: KeyframesConfig = KeyframesConfig()
    shard: ShardConfig = ShardConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _flow(self) -> PipelineConfig:
        unknown = [s for s in self.stages if s not in FLOW]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; the flow is {list(FLOW)}")
        missing = [s for s in self.stages if s not in IMPLEMENTED]
        if missing:
            raise ValueError(f"stage(s) {missing} are not implemented yet")
        if self.stages != sorted(self.stages, key=FLOW.index) or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be unique and in flow order {list(FLOW)}")
        return self


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override to a raw config mapping; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    dotted, _, text = assignment.partition("=")
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set has an empty key in {assignment!r}")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(text) if text.strip() else None


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{where}'")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return "invalid config: " + "; ".join(lines)


def validate(raw: dict[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    return validate(raw)
