"""Generator backends: one config class per backend, validated when the config loads (each key
checked, naming it, before any work), and the builder picked by the class."""

from __future__ import annotations

import pytest
import yaml

from helpers import CONFIGS
from vtcurate.config import (
    ConfigError,
    OpenAIBackend,
    RewriteConfig,
    TransformersBackend,
    VLLMBackend,
    load_config,
)
from vtcurate.models import backends
from vtcurate.models.backends import open_generator, sampling_of


def _load(tmp_path, text: str, overrides: list[str] | None = None):
    path = tmp_path / "run.yaml"
    path.write_text(text, "utf-8")
    return load_config(path, overrides)


def _fails(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    return str(err.value)


def test_shipped_configs_load_with_their_backends():
    default, demo = load_config(CONFIGS / "default.yaml"), load_config(CONFIGS / "demo.yaml")
    assert isinstance(default.rewrite.llm, VLLMBackend) and isinstance(default.aux_caption.llm, VLLMBackend)
    assert default.aux_caption.llm.model == "Qwen/Qwen2.5-VL-7B-Instruct"  # backend from aux_caption.backend
    assert isinstance(demo.rewrite.llm, TransformersBackend) and demo.rewrite.llm.model is None


def test_an_llm_section_naming_no_backend_is_transformers(tmp_path):
    config = _load(tmp_path, "rewrite: {llm: {model: /models/lm, device: cpu}}\n")
    assert isinstance(config.rewrite.llm, TransformersBackend) and config.rewrite.llm.device == "cpu"
    assert isinstance(RewriteConfig().llm, TransformersBackend)


@pytest.mark.parametrize(
    ("llm", "expected"),
    [
        # a key of another backend is unknown, named with the backend it is not a key of
        ("{model: m, base_url: 'http://x/v1'}", "unknown key 'rewrite.llm.transformers.base_url'"),
        ("{backend: openai, base_url: 'http://x/v1', model: m, device: cuda}",
         "unknown key 'rewrite.llm.openai.device'"),
        ("{backend: openai, base_url: 'http://x/v1', model: m, vllm_args: [-x]}",
         "unknown key 'rewrite.llm.openai.vllm_args'"),
        # what each backend cannot run without
        ("{backend: openai, model: m}", "rewrite.llm.openai.base_url: Field required"),
        ("{backend: openai, base_url: 'http://x/v1'}", "rewrite.llm.openai.model: Field required"),
        ("{backend: vllm}", "rewrite.llm.vllm.model: Field required"),
        ("{backend: openai, base_url: 'x:8000', model: m}", "openai.base_url: Value error, must be an"),
        ("{backend: vllm, model: m, vllm_mode: offline, base_url: 'http://x/v1'}", "base_url names a server"),
        ("{backend: llamacpp}", "rewrite.llm: Input tag 'llamacpp'"),
    ],
)  # fmt: skip
def test_backend_keys_fail_at_load_naming_the_key(tmp_path, llm, expected):
    assert expected in _fails(tmp_path, f"rewrite: {{llm: {llm}}}\n")


def test_aux_caption_backend_picks_the_llm_backend(tmp_path):
    config = _load(tmp_path, "aux_caption: {backend: openai, llm: {base_url: 'http://x/v1', model: vlm}}\n")
    assert isinstance(config.aux_caption.llm, OpenAIBackend)
    same = "aux_caption: {backend: openai, llm: {backend: openai, base_url: 'http://x/v1', model: vlm}}\n"
    assert isinstance(_load(tmp_path, same).aux_caption.llm, OpenAIBackend)
    other = "aux_caption: {backend: openai, llm: {backend: vllm, model: vlm}}\n"
    assert "drop llm.backend (vllm) or make them equal" in _fails(tmp_path, other)
    assert "llm.model: the transformers captioner needs a model directory" in _fails(
        tmp_path, "aux_caption: {backend: transformers}\n"
    )
    assert "aux_caption.llm.vllm.model: Field required" in _fails(tmp_path, "aux_caption: {backend: vllm}\n")
    # retrieval uses no generator: its llm section keeps the default
    retrieval = _load(tmp_path, "aux_caption: {backend: retrieval}\n").aux_caption
    assert isinstance(retrieval.llm, TransformersBackend)


def test_overriding_the_backend_keeps_the_shared_keys(tmp_path):
    """The tests' demo override: openai over the demo's transformers section (sampling and
    batch_size are keys of every backend)."""
    demo = yaml.safe_load((CONFIGS / "demo.yaml").read_text("utf-8"))
    overrides = ["rewrite.llm.backend=openai", "rewrite.llm.base_url=http://127.0.0.1:9/v1",
                 "rewrite.llm.model=fake-model"]  # fmt: skip
    llm = load_config(CONFIGS / "demo.yaml", overrides).rewrite.llm
    assert isinstance(llm, OpenAIBackend)
    shared = ("batch_size", "max_tokens", "temperature", "repetition_penalty")
    assert {k: getattr(llm, k) for k in shared} == {k: demo["rewrite"]["llm"][k] for k in shared}
    assert sampling_of(llm).max_tokens == demo["rewrite"]["llm"]["max_tokens"]


def test_the_builder_is_picked_by_the_config_class(monkeypatch):
    built = []
    for cls in (TransformersBackend, OpenAIBackend, VLLMBackend):
        monkeypatch.setitem(backends.BUILDERS, cls, lambda cfg, kind: built.append((type(cfg), kind)))
    open_generator(TransformersBackend(), "chat")
    open_generator(OpenAIBackend(backend="openai", model="m", base_url="http://x/v1"), "caption")
    open_generator(VLLMBackend(backend="vllm", model="m"), "chat")
    assert built == [(TransformersBackend, "chat"), (OpenAIBackend, "caption"), (VLLMBackend, "chat")]
    assert set(backends.BUILDERS) == {TransformersBackend, OpenAIBackend, VLLMBackend}


def test_a_vllm_endpoint_is_a_client_and_starts_nothing():
    endpoint = "http://127.0.0.1:9/v1"
    gen = open_generator(VLLMBackend(backend="vllm", model="served", base_url=endpoint), "chat")
    try:
        assert gen.model_id == "served" and gen.provenance()["base_url"] == endpoint
    finally:
        gen.close()
