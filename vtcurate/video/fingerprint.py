"""Perceptual fingerprints of key-frames for near-duplicate search.

A frame's fingerprint is a few 64-bit DCT perceptual hashes of its grey image, one per centre crop
(`crops`, shares of width and height), plus a colour thumbnail.  The hashes ignore re-encoding,
resizing, brightness and contrast; the centre crops let a cropped re-upload meet the original at
the crop's scale and keep corner logos and subtitle lines out of the smaller crops.  The thumbnail
(THUMB×THUMB cells, each colour channel normalised to zero mean and unit spread over the frame, so
that brightness, contrast and saturation changes cancel) tells apart pictures that the grey hash
cannot, such as a red shape from a green one; two thumbnails are compared on most of their cells,
not all, because an overlay (a logo, a subtitle, a box) changes a few cells completely.
Flat frames (black, blank, fades) get no fingerprint: they would match every other flat frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

THUMB = 6  # thumbnail side, cells
_UNIT = 32  # a thumbnail stores normalised values as int8 in 1/_UNIT steps (±4 spreads)
_MIN_SPREAD = 12.0  # a channel flatter than this (0-255) is not stretched: its noise is not a pattern


def phash(grey: np.ndarray) -> int:
    """64-bit pHash: signs of the 8×8 lowest DCT frequencies of a 32×32 image against their median."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int(np.packbits(bits).view(">u8")[0])


def centre_crop(img: np.ndarray, share: float) -> np.ndarray:
    h, w = img.shape[:2]
    dy, dx = round(h * (1 - share) / 2), round(w * (1 - share) / 2)
    return img[dy : h - dy, dx : w - dx]


def thumbnail(rgb: np.ndarray) -> bytes:
    """THUMB×THUMB colour cells, each channel normalised over the frame, as int8 bytes."""
    cells = cv2.resize(rgb, (THUMB, THUMB), interpolation=cv2.INTER_AREA).reshape(-1, 3).astype(np.float32)
    cells = (cells - cells.mean(0)) / np.maximum(cells.std(0), _MIN_SPREAD)
    return np.clip(np.round(cells * _UNIT), -127, 127).astype(np.int8).tobytes()


def frame_fingerprint(
    jpeg: bytes, min_std: float, crops: Sequence[float] = (1.0,)
) -> tuple[list[int], bytes] | None:
    """(one pHash per centre crop, thumbnail), or None for an unreadable or flat frame."""
    from vtcurate.video.frames import decode_jpeg
    from vtcurate.video.source import VideoSourceError

    try:
        img = decode_jpeg(jpeg)
    except VideoSourceError:
        return None
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if float(grey.std()) < min_std:
        return None
    return [phash(centre_crop(grey, share)) for share in crops], thumbnail(img)


def hash_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[i, j]: the fewest bits in which any hash of frame i of `a` differs from any of frame j of
    `b` (arrays of uint64, frames × crops)."""
    return np.bitwise_count(a[:, None, :, None] ^ b[None, :, None, :]).min(axis=(2, 3))


def thumbs_array(thumbs: list[bytes]) -> np.ndarray:
    """Thumbnails as floats in spreads, frames × cells × channels."""
    raw = np.frombuffer(b"".join(thumbs), np.int8).astype(np.float32) / _UNIT
    return raw.reshape(len(thumbs), THUMB * THUMB, 3)


def thumb_distances(a: np.ndarray, b: np.ndarray, overlay_share: float) -> np.ndarray:
    """[i, j]: how far apart thumbnails i of `a` and j of `b` are (in spreads) on all but their
    `overlay_share` most different cells: the quantile 1 - overlay_share of the cells' largest
    channel difference."""
    cells = np.abs(a[:, None] - b[None, :]).max(axis=3)
    return np.quantile(cells, 1.0 - overlay_share, axis=2)


def bands(h: int, n: int) -> list[int]:
    """Split a 64-bit hash into n bands (LSH keys); two hashes within n-1 bits share a band."""
    width = 64 // n
    mask = (1 << width) - 1
    return [(h >> (i * width)) & mask for i in range(n)]
