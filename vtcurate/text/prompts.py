"""Prompt templates per language, validated and hashed: a config's own file, or vtcurate's
(package data in vtcurate/prompts/, read with importlib.resources so that an installed wheel has them)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from vtcurate.config import ConfigError, PromptSpec
from vtcurate.models.generation import Chat, Message, digest


def bundled_prompts(name: str):
    """vtcurate's own prompt file `name` (a Traversable: read it, do not rely on a path)."""
    return resources.files("vtcurate").joinpath("prompts", name)


def load_prompts(path: str | Path | None, bundled: str) -> dict[str, PromptSpec]:
    """The prompts of the file at `path`, or of vtcurate's own `bundled` file when `path` is None."""
    source = bundled_prompts(bundled) if path is None else Path(path)
    if not source.is_file():
        raise ConfigError(f"prompt file not found: {source}")
    raw = yaml.safe_load(source.read_text("utf-8")) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of language -> {{system, user}}")
    try:
        return {str(lang): PromptSpec.model_validate(spec) for lang, spec in raw.items()}
    except ValidationError as err:
        raise ConfigError(f"{source}: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}") from None


def prompt_sha(spec: PromptSpec) -> str:
    return digest(spec.system, spec.user)[:16]


def render(spec: PromptSpec, caption: str = "", images: list[Message] | None = None) -> Chat:
    user = spec.user.replace("{caption}", caption)
    content: str | list[Message] = [*images, {"type": "text", "text": user}] if images else user
    return [{"role": "system", "content": spec.system}, {"role": "user", "content": content}]
