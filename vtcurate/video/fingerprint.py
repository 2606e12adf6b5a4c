"""Perceptual fingerprints of key-frames for near-duplicate search.

A frame's fingerprint is a 64-bit DCT perceptual hash of its grey image (robust to re-encoding,
resizing and small crops; indexed by LSH bands) plus a 4×4 RGB thumbnail, because the grey hash
cannot tell a red circle from a green one in the same place.  Flat frames (black, blank, fades)
get no fingerprint: they would match every other flat frame.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB = 4  # thumbnail side, cells


def phash(grey: np.ndarray) -> int:
    """64-bit pHash: signs of the 8×8 lowest DCT frequencies of a 32×32 image against their median."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int(np.packbits(bits).view(">u8")[0])


def frame_fingerprint(jpeg: bytes, min_std: float) -> tuple[int, bytes] | None:
    from vtcurate.video.frames import decode_jpeg
    from vtcurate.video.source import VideoSourceError

    try:
        img = decode_jpeg(jpeg)
    except VideoSourceError:
        return None
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if float(grey.std()) < min_std:
        return None
    thumb = cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return phash(grey), thumb.tobytes()


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def thumb_diff(a: bytes, b: bytes) -> int:
    """Largest per-cell colour difference of two thumbnails (0-255)."""
    return int(np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8)).max())


def bands(h: int, n: int) -> list[int]:
    """Split a 64-bit hash into n bands (LSH keys); two hashes within n-1 bits share a band."""
    width = 64 // n
    mask = (1 << width) - 1
    return [(h >> (i * width)) & mask for i in range(n)]
