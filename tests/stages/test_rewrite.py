"""rewrite: validation with retries and fallback, per-row provenance, the cache, and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
from conftest import echo_rewrite
from models.fake_openai import FakeOpenAIServer, last_user_text

from helpers import CONFIGS
from vtcurate.config import OpenAIBackend, RewriteConfig, TransformersBackend
from vtcurate.pipeline.rundir import RunDir
from vtcurate.stages.rewrite import RewriteStage

CAPTIONS = [
    ("a red circle moves from left to right stock footage", "en"),
    ("a blue square moves from top to bottom", "en"),
    ("一个绿色的三角形从右向左移动", "zh"),
]


def _stage(server: FakeOpenAIServer, work_dir: Path | None, **kw) -> RewriteStage:
    llm = OpenAIBackend(backend="openai", base_url=server.base_url, model="fake-model", max_retries=0)
    cfg = RewriteConfig(llm=llm, **kw)
    stage = RewriteStage(cfg)
    stage.work_dir = work_dir
    return stage


def _table(rows=CAPTIONS) -> pa.Table:
    return pa.table(
        {
            "clip_id": [f"c{i}" for i in range(len(rows))],
            "caption": [c for c, _ in rows],
            "lang": [lang for _, lang in rows],
        }
    )


def test_rewrites_validated_outputs_and_records_provenance(tmp_path):
    with FakeOpenAIServer(echo_rewrite) as server:
        stage = _stage(server, tmp_path / "cache")
        stage.setup()
        out = stage(_table()).to_pylist()
        stage.teardown()
    assert [r["rewrite_status"] for r in out] == ["rewritten"] * 3
    assert out[1]["caption"] == "A blue square moves from top to bottom."
    assert out[2]["caption"].endswith("。")
    assert [r["caption_original"] for r in out] == [c for c, _ in CAPTIONS]
    assert {r["rewrite_model"] for r in out} == {"fake-model"}
    assert all(len(r["rewrite_prompt_sha"]) == 16 for r in out)
    assert out[0]["rewrite_prompt_sha"] != out[2]["rewrite_prompt_sha"]  # one template per language
    assert json.loads(out[0]["rewrite_sampling"])["max_tokens"] == stage.config.llm.max_tokens
    prompts = server.prompts()
    assert any("标题：" in p for p in prompts) and any("Caption:" in p for p in prompts)


def test_bad_outputs_are_retried_then_fall_back_to_the_original(tmp_path):
    replies = {
        "red": ["Sure, here is a rewritten caption: a red circle.", "A red circle moves from left to right."],
        "blue": ["Visit https://stock.example.com now"] * 2,
        "绿色": ["A green triangle moves from right to left."] * 2,  # English for a Chinese caption
    }
    seen: dict[str, int] = {}

    def responder(request: dict) -> str:
        text = last_user_text(request)
        key = next(k for k in replies if k in text)
        seen[key] = seen.get(key, 0) + 1
        return replies[key][min(seen[key], 2) - 1]

    with FakeOpenAIServer(responder) as server:
        stage = _stage(server, tmp_path / "cache", attempts=2)
        out = stage(_table()).to_pylist()
        bodies = server.requests
    assert out[0]["rewrite_status"] == "rewritten" and out[0]["rewrite_attempts"] == 2
    assert out[0]["caption"] == "A red circle moves from left to right."
    assert out[1]["rewrite_status"] == "fallback:url" and out[1]["caption"] == CAPTIONS[1][0]
    assert out[2]["rewrite_status"] == "fallback:wrong_language" and out[2]["caption"] == CAPTIONS[2][0]
    # the retry samples (a greedy retry would repeat the failure) with another seed
    retries = [b for b in bodies if b["temperature"] > 0]
    assert retries and all(b["seed"] != stage.config.llm.seed for b in retries)


def test_cache_means_a_rerun_generates_nothing(tmp_path):
    with FakeOpenAIServer(echo_rewrite) as server:
        first = _stage(server, tmp_path / "cache")(_table()).to_pylist()
        n = server.request_count
        again = _stage(server, tmp_path / "cache")(_table()).to_pylist()
        assert server.request_count == n == 3
        other_prompt = _stage(server, tmp_path / "cache", max_length_ratio=2.0)  # not in the key
        other_prompt(_table())
        assert server.request_count == n
    assert [r["caption"] for r in again] == [r["caption"] for r in first]
    assert all(r["rewrite_cached"] for r in again) and not any(r["rewrite_cached"] for r in first)


def test_killed_during_rewrite_resumes_without_calling_the_llm_for_cached_rows(demo_corpus, tmp_path):
    def slow_echo(request: dict) -> str:
        time.sleep(0.2)
        return echo_rewrite(request)

    run_dir, cache = tmp_path / "run", tmp_path / "run" / "cache" / "rewrite"
    with FakeOpenAIServer(slow_echo) as server:
        cmd = [
            sys.executable, "-m", "vtcurate.cli", "run", str(CONFIGS / "demo.yaml"),
            "--input", str(demo_corpus / "manifest.jsonl"), "--run-dir", str(run_dir), "--runner", "local",
            "--set", "partition_rows=8", "--set", "report.enabled=false",
            "--set", "rewrite.llm.backend=openai", "--set", f"rewrite.llm.base_url={server.base_url}",
            "--set", "rewrite.llm.model=fake-model", "--set", "rewrite.llm.concurrency=1",
            "--set", "rewrite.llm.batch_size=4",
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            lines = sum(1 for f in cache.glob("*.jsonl") for _ in f.open()) if cache.exists() else 0
            if lines >= 8:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed mid-rewrite"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (RunDir(run_dir).stage("rewrite").path / "_SUCCESS").exists()
        cached = {json.loads(line)["key"] for f in cache.glob("*.jsonl") for line in f.open() if line.strip()}
        before = server.prompts()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = server.prompts()[len(before) :]
    import pyarrow.dataset as ds

    status = ds.dataset(RunDir(run_dir).stage("rewrite").kept).to_table(columns=["rewrite_status"])
    rows = sum(s != "skipped:language" for s in status.column(0).to_pylist())  # rows sent to the LLM
    assert len(cached) >= 8
    # the rerun asked only for the rows not cached before the kill (plus at most the one in flight)
    assert rows - len(cached) <= len(after) <= rows - len(cached) + 1
    assert len(set(after) & set(before)) <= 1


def test_real_smollm2_through_the_stage(tmp_path):
    """The transformers backend with the real SmolLM2 GGUF: every row gets a validated rewrite or
    a fallback that says why, and the model is recorded."""
    llm = TransformersBackend(model=None, max_tokens=32, batch_size=4)
    stage = RewriteStage(RewriteConfig(llm=llm, attempts=1))
    stage.work_dir = tmp_path / "cache"
    stage.setup()
    out = stage(_table()).to_pylist()
    stage.teardown()
    assert {r["rewrite_model"] for r in out} == {"SmolLM2-135M-Instruct.Q4_1.gguf"}
    for row, (caption, _) in zip(out, CAPTIONS):
        assert row["rewrite_status"] == "rewritten" or row["rewrite_status"].startswith("fallback:")
        if row["rewrite_status"] != "rewritten":
            assert row["caption"] == caption
        assert row["rewrite_output_tokens"] > 0
    # a feature, not only fallbacks: SmolLM2 rewrites English (its Chinese fails validation)
    assert [r["rewrite_status"] for r in out[:2]].count("rewritten") >= 1, [r["rewrite_status"] for r in out]


def test_the_cache_misses_when_what_the_output_depends_on_changes(tmp_path):
    """The key covers the caption, its language, the model, the prompt and the sampling: change
    any one and the rewrite is generated again; change nothing and nothing is asked."""
    from vtcurate.text.prompts import bundled_prompts

    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(bundled_prompts("rewrite.yaml").read_text("utf-8"), "utf-8")
    one = [("a blue square moves from top to bottom", "en")]

    def asked(server, table=None, llm=None, **kw) -> int:
        before = len(server.prompts())
        llm = llm or OpenAIBackend(
            backend="openai", base_url=server.base_url, model="fake-model", max_retries=0
        )
        stage = RewriteStage(RewriteConfig(llm=llm, prompts=str(prompts), **kw))
        stage.work_dir = tmp_path / "cache"
        stage.setup()
        stage(table or _table(one))
        stage.teardown()
        return len(server.prompts()) - before

    with FakeOpenAIServer(echo_rewrite) as server, FakeOpenAIServer(echo_rewrite, model="other") as other:
        assert asked(server) == 1
        assert asked(server) == 0  # the same request: from the cache
        as_zh = {"languages": ["en", "zh"], "table": _table([(one[0][0], "zh")])}
        assert asked(server, **as_zh) > 0  # the language (an English reply fails as Chinese: retried)
        assert asked(server, **as_zh) == 0  # its outcome, a fallback, is cached too
        llm = {"backend": "openai", "base_url": server.base_url, "model": "fake-model", "max_retries": 0}
        assert asked(server, llm=OpenAIBackend(**llm, temperature=0.3)) == 1  # sampling
        assert (
            asked(server, llm=OpenAIBackend(**{**llm, "base_url": other.base_url, "model": "other"})) == 0
        )
        assert len(other.prompts()) == 1  # the other model was asked: a miss
        text = prompts.read_text("utf-8").replace("Caption:", "Caption text:")
        prompts.write_text(text, "utf-8")
        assert asked(server) == 1  # the prompt
        assert asked(server) == 0


def test_a_torn_last_cache_line_is_skipped(tmp_path, caplog):
    """A run killed mid-write leaves half a line: the entries before it load, it is skipped."""
    from vtcurate.models.gencache import GenerationCache

    cache = GenerationCache(tmp_path)
    cache.put_many({"a": {"text": "A."}, "b": {"text": "B."}})
    segment = next(tmp_path.glob("*.jsonl"))
    with open(segment, "a", encoding="utf-8") as fh:
        fh.write('{"key": "c", "value": {"te')  # torn by a kill
    fresh = GenerationCache(tmp_path)
    assert fresh.get("a") == {"text": "A."} and fresh.get("b") == {"text": "B."}
    assert fresh.get("c") is None and len(fresh) == 2
    assert "torn line" in caplog.text
