"""The training loader's frame decoding: the backbone's preprocessing, the model's frames, the cache."""

import numpy as np
import torch
from PIL import Image

from vtcurate.config import ClipModelSpec
from vtcurate.models.clip import create_clip
from vtcurate.train.data import FrameDecoder


def _clip_images(n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (128, 170, 3), dtype=np.uint8) for _ in range(n)]


def test_decoded_frames_are_the_backbones_preprocessing_of_the_chosen_frames():
    _, preprocess, _, _ = create_clip(ClipModelSpec(name="vtc-tiny-vit"), "cpu", "fp32")
    images = _clip_images()
    out = FrameDecoder(preprocess, num_frames=4)(images)
    expected = torch.stack([preprocess(Image.fromarray(images[i])) for i in (0, 2, 5, 7)])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_a_cached_clip_is_not_decoded_again():
    _, preprocess, _, _ = create_clip(ClipModelSpec(name="vtc-tiny-vit"), "cpu", "fp32")
    images = _clip_images()
    decoded = []

    def lazy(img):
        def decode():
            decoded.append(1)
            return img

        return decode

    decoder = FrameDecoder(preprocess, num_frames=8, cache=True)
    first = decoder([lazy(i) for i in images], "clip-1")
    assert len(decoded) == 8
    again = decoder([lazy(i) for i in images], "clip-1")
    assert len(decoded) == 8  # served from the cache
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert decoder.cache["clip-1"].dtype == torch.uint8  # pixels are kept, not floats
