"""What every text-generation backend (rewrite's LLMs, aux_caption's VLMs) offers the stages.

A request is an OpenAI-style chat: a list of messages whose `content` is a string, or a list of
parts (`{"type": "text", ...}`, `{"type": "image", "image": <jpeg bytes>}`).  Backends translate
that into their engine's own form (base64 data URLs for HTTP servers, PIL images for
transformers/vLLM).  `generate` returns one `Generation` per request, in order: a request that
failed carries its error instead of text, so one bad request never fails its batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from vtcurate.encoding import data_uri

Message = dict[str, Any]
Chat = list[Message]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 96
    seed: int = 0
    repetition_penalty: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Generation:
    text: str | None
    error: str | None = None
    output_tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class Generator(Protocol):
    """A loaded text generator.  `model_id` names the weights (recorded per row)."""

    model_id: str

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]: ...

    def provenance(self) -> dict: ...

    def close(self) -> None: ...


def image_part(jpeg: bytes) -> Message:
    return {"type": "image", "image": jpeg}


def to_openai_content(content: str | list[Message]) -> str | list[Message]:
    """Message content in the OpenAI wire form: images become base64 data URLs."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part["type"] == "image":
            url = data_uri(part["image"], "image/jpeg")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            parts.append(part)
    return parts


def digest(*items: Any) -> str:
    """A stable hex digest of JSON-able items (bytes are hashed first)."""
    norm = [hashlib.sha256(i).hexdigest() if isinstance(i, bytes) else i for i in items]
    return hashlib.sha256(json.dumps(norm, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
