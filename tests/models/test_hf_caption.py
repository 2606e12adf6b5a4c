"""The transformers image captioner: tiny random captioners of each supported architecture, saved and
loaded through the same loader as real checkpoints."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tiny_models import save_random_captioner

from vtcurate.models.generation import Sampling, image_part
from vtcurate.models.hf_caption import TransformersImageCaptioner


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
