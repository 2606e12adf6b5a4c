"""Build the generator a stage's `llm` section asks for (rewrite: an LLM; aux_caption: a VLM); the
builder is picked by the config's class (`vtcurate.config.LLMBackendConfig`), which has validated
the section's keys when the config loaded.

- transformers: in-process Hugging Face model (CPU or GPU); a GGUF file or a model directory.
- openai:       any OpenAI-compatible server at `base_url`.
- vllm:         `server` mode: the endpoint at `base_url`, or else a `vllm serve` process started
                by the worker that needs it, from vLLM's own environment (`vllm_executable`),
                health-checked, and stopped at teardown; a worker holding one GPU gets one server,
                so a node runs one server per GPU.  `offline` mode: vLLM's `LLM` class in-process
                (a GPU image where vLLM shares the environment).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

from vtcurate.config import LLMBackendConfig, OpenAIBackend, TransformersBackend, VLLMBackend
from vtcurate.errors import UserError
from vtcurate.models.generation import Chat, Generation, Generator, Sampling

Kind = Literal["chat", "caption"]


def sampling_of(cfg: LLMBackendConfig) -> Sampling:
    return Sampling(
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_tokens,
        seed=cfg.seed,
        repetition_penalty=cfg.repetition_penalty,
    )


def _api_key(cfg: OpenAIBackend | VLLMBackend) -> str | None:
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise UserError(f"llm.api_key_env names {cfg.api_key_env}, which is not set")
    return key


def _client(cfg: OpenAIBackend | VLLMBackend, base_url: str, model: str):
    from vtcurate.models.openai_client import OpenAIChatClient

    return OpenAIChatClient(
        base_url=base_url,
        model=model,
        api_key=_api_key(cfg),
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
    )


class ServedGenerator:
    """An OpenAI client bound to the `vllm serve` process it started; closing stops both."""

    def __init__(self, cfg: VLLMBackend) -> None:
        from vtcurate.models.vllm_server import VLLMServer

        self.server = VLLMServer(
            model=cfg.model,
            executable=cfg.vllm_executable,
            extra_args=cfg.vllm_args,
            env=cfg.vllm_env,
            startup_timeout=cfg.startup_timeout_s,
        )
        self.server.start()
        self.client = _client(cfg, self.server.base_url, self.server.served_model_name)
        self.model_id = self.client.model_id

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        return self.client.generate(chats, sampling)

    def provenance(self) -> dict:
        return {**self.client.provenance(), "backend": "vllm", "mode": "server", "started_here": True}

    def close(self) -> None:
        self.client.close()
        self.server.close()


def _transformers(cfg: TransformersBackend, kind: Kind) -> Generator:
    if kind == "chat":
        from vtcurate.models.hf_chat import TransformersChatLM

        return TransformersChatLM(model=cfg.model, device=cfg.device, batch_size=cfg.batch_size)
    from vtcurate.models.hf_caption import TransformersImageCaptioner

    return TransformersImageCaptioner(model=cfg.model, device=cfg.device, batch_size=cfg.batch_size)


def _openai(cfg: OpenAIBackend, kind: Kind) -> Generator:
    return _client(cfg, cfg.base_url, cfg.model)


def _vllm(cfg: VLLMBackend, kind: Kind) -> Generator:
    if cfg.vllm_mode == "offline":
        from vtcurate.models.vllm_offline import VLLMOffline

        return VLLMOffline(cfg.model, batch_size=cfg.batch_size)
    if cfg.base_url:
        return _client(cfg, cfg.base_url, cfg.model)
    return ServedGenerator(cfg)


# One builder per backend config class.
BUILDERS: dict[type, Callable[..., Generator]] = {
    TransformersBackend: _transformers,
    OpenAIBackend: _openai,
    VLLMBackend: _vllm,
}


def open_generator(cfg: LLMBackendConfig, kind: Kind) -> Generator:
    """A loaded generator; callers close() it in their teardown."""
    return BUILDERS[type(cfg)](cfg, kind)
