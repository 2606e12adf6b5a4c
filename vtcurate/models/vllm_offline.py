"""vLLM in-process (offline batch inference) through its `LLM` class.

Only where vLLM shares the Python environment: the GPU image's /opt/vllm env (see Dockerfile).
vLLM pins its own torch and transformers, so this is never imported beside open_clip in the main
environment; the CPU path and the tests use `vllm serve` through the OpenAI client instead.
"""

from __future__ import annotations

from vtcurate.errors import UserError
from vtcurate.models.generation import Chat, Generation, Sampling


def _vllm_messages(chat: Chat) -> list[dict]:
    """Image parts become PIL images, the form vLLM's chat() takes for multimodal models."""
    from PIL import Image

    from vtcurate.video.frames import decode_jpeg

    out = []
    for msg in chat:
        content = msg["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_pil", "image_pil": Image.fromarray(decode_jpeg(p["image"]))}
                if p["type"] == "image"
                else p
                for p in content
            ]
        out.append({"role": msg["role"], "content": content})
    return out


class VLLMOffline:
    def __init__(self, model: str, batch_size: int = 64) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise UserError(
                "llm.vllm_mode: offline needs vLLM in this environment (the GPU image); "
                "use vllm_mode: server to run it from its own environment"
            ) from err
        self.model_id = model
        self.batch_size = batch_size
        self.llm = LLM(model=model)

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[Generation]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            repetition_penalty=sampling.repetition_penalty,
        )
        results: list[Generation] = []
        for i in range(0, len(chats), self.batch_size):
            part = chats[i : i + self.batch_size]
            try:
                outs = self.llm.chat([_vllm_messages(c) for c in part], params, use_tqdm=False)
            except Exception as err:  # noqa: BLE001 - one failed batch must not lose the others
                results.extend(Generation(None, f"vllm: {type(err).__name__}: {err}") for _ in part)
                continue
            for out in outs:
                gen = out.outputs[0]
                results.append(Generation(gen.text.strip(), output_tokens=len(gen.token_ids)))
        return results

    def provenance(self) -> dict:
        from importlib.metadata import version

        return {"backend": "vllm", "mode": "offline", "model": self.model_id, "vllm": version("vllm"),
                "random_weights": False}  # fmt: skip

    def close(self) -> None:
        del self.llm
