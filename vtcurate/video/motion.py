"""Motion and blank-frame measures on small grey frames (numpy and cv2 only).

- moving share: the share of pixels whose grey level changed by more than `delta` between two
  frames (a slight blur first, so compression noise does not count), a cheap stand-in for optical
  flow that is 0 for a still picture and grows with what moves;
- mean absolute difference: about 0 for a repeated (frozen) frame, a few grey levels for sensor noise;
- black and flat frames: nearly every pixel dark, or hardly any variation at all.
"""

from __future__ import annotations

import numpy as np


def grey(image: np.ndarray, short_side: int) -> np.ndarray:
    """An RGB (or grey) image as float32 grey levels, resized so its short side is `short_side`."""
    import cv2

    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    h, w = g.shape
    scale = short_side / min(h, w)
    if scale < 1:
        g = cv2.resize(g, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return g.astype(np.float32)


def decode_grey(jpeg: bytes, short_side: int) -> np.ndarray:
    """A stored key-frame (JPEG bytes) as grey levels at `short_side`."""
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    return grey(img, short_side)


def _same_size(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.shape == b.shape:
        return a, b
    import cv2

    return a, cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)


def moving_share(a: np.ndarray, b: np.ndarray, delta: float) -> float:
    """Share of pixels whose grey level differs by more than `delta` between two grey frames."""
    import cv2

    a, b = _same_size(a, b)
    diff = np.abs(cv2.GaussianBlur(a, (3, 3), 0) - cv2.GaussianBlur(b, (3, 3), 0))
    return float(np.mean(diff > delta))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _same_size(a, b)
    return float(np.mean(np.abs(a - b)))


def is_black(g: np.ndarray, luma: float, share: float) -> bool:
    """At least `share` of the pixels are at most `luma` bright (a black frame, a logo or a line of
    text on it included)."""
    return bool(np.mean(g <= luma) >= share)


def is_flat(g: np.ndarray, std: float) -> bool:
    """Hardly any variation: a blank frame of one colour."""
    return bool(np.std(g) < std)


def pair_times(start: float, end: float, pairs: int, gap: float) -> list[tuple[float, float]]:
    """`pairs` (t, t + gap) time pairs, t at the middles of equal segments of [start, end - gap);
    a span shorter than the gap gets pairs from its start to its last instant."""
    usable = end - start - gap
    if usable <= 0:
        gap = max(0.0, (end - start) * 0.5)
        usable = end - start - gap
    step = usable / pairs
    return [(start + (i + 0.5) * step, start + (i + 0.5) * step + gap) for i in range(pairs)]
