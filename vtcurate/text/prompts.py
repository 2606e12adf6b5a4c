"""Prompt templates per language (configs/prompts/*.yaml), validated and hashed."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from vtcurate.config import ConfigError, PromptSpec
from vtcurate.models.generation import Chat, Message, digest


def load_prompts(path: str | Path) -> dict[str, PromptSpec]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompt file not found: {path}")
    raw = yaml.safe_load(path.read_text("utf-8")) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of language -> {{system, user}}")
    try:
        return {str(lang): PromptSpec.model_validate(spec) for lang, spec in raw.items()}
    except ValidationError as err:
        raise ConfigError(f"{path}: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}") from None


def prompt_sha(spec: PromptSpec) -> str:
    return digest(spec.system, spec.user)[:16]


def render(spec: PromptSpec, caption: str = "", images: list[Message] | None = None) -> Chat:
    user = spec.user.replace("{caption}", caption)
    content: str | list[Message] = [*images, {"type": "text", "text": user}] if images else user
    return [{"role": "system", "content": spec.system}, {"role": "user", "content": content}]
