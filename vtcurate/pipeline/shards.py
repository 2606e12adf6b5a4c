"""Read the emitted WebDataset shards back: (frames T x C x H x W, caption, metadata).

loader = make_loader("runs/demo/shards", split="train", batch_size=8, num_workers=2)
for frames, captions, metas in loader: ...   # frames: uint8 tensor B x T x C x H x W
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from vtcurate.errors import UserError

_FRAME = re.compile(r"^f(\d+)\.jpg$")


def load_index(shards_dir: str | Path) -> dict:
    return json.loads((Path(shards_dir) / "index.json").read_text("utf-8"))


def shard_paths(shards_dir: str | Path, split: str | None = None, lang: str | None = None) -> list[str]:
    index = load_index(shards_dir)
    return [
        str(Path(shards_dir) / s["path"])
        for s in index["shards"]
        if (split is None or s["split"] == split) and (lang is None or lang in s["languages"])
    ]


class CorruptShardError(UserError):
    """A shard whose bytes do not match the sha256 recorded in index.json (or that is missing)."""


def verify_shards(shards_dir: str | Path, split: str | None = None) -> int:
    """Check every shard of `split` against index.json's sha256; return how many were checked."""
    from vtcurate.checksums import file_sha256

    index = load_index(shards_dir)
    checked = 0
    for shard in index["shards"]:
        if split is not None and shard["split"] != split:
            continue
        path = Path(shards_dir) / shard["path"]
        if not path.is_file():
            raise CorruptShardError(f"shard {path} listed in index.json is missing")
        if file_sha256(path) != shard["sha256"]:
            raise CorruptShardError(f"shard {path} is corrupted: its sha256 differs from index.json")
        checked += 1
    return checked


def _center_square(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = img[top : top + side, left : left + side]
    return crop if side == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def frame_members(sample: dict[str, Any]) -> list[str]:
    """The sample's frame member names (f0.jpg, f1.jpg, ...) in time order."""
    numbered = sorted((int(m.group(1)), k) for k in sample if (m := _FRAME.match(k)))
    return [k for _, k in numbered]


def decode_sample(sample: dict[str, Any], frame_size: int | None = None):
    """A raw webdataset sample -> (uint8 tensor T x C x H x W, caption, metadata dict)."""
    import torch

    from vtcurate.video.frames import decode_jpeg

    images = []
    for k in frame_members(sample):
        img = decode_jpeg(sample[k])
        images.append(_center_square(img, frame_size) if frame_size else img)
    frames = torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2)
    return frames, sample["txt"].decode("utf-8"), json.loads(sample["json"])


def _collate(batch):
    import torch

    frames, captions, metas = zip(*batch)
    return torch.stack(frames), list(captions), list(metas)


def make_dataset(urls: list[str], frame_size: int | None = 224, shuffle: int = 0):
    import webdataset as wds

    ds = wds.WebDataset(urls, shardshuffle=bool(shuffle), empty_check=False)
    if shuffle:
        ds = ds.shuffle(shuffle)
    return ds.map(lambda s: decode_sample(s, frame_size))


def make_loader(
    shards_dir: str | Path,
    split: str | None = "train",
    batch_size: int = 8,
    num_workers: int = 0,
    frame_size: int | None = 224,
    shuffle: int = 0,
    verify: bool = False,
):
    """A torch DataLoader over the shards of `split`; frames are centre-cropped to frame_size².
    `verify`: first check every shard's sha256 against index.json (CorruptShardError names a bad one)."""
    from torch.utils.data import DataLoader

    if verify:
        verify_shards(shards_dir, split)
    urls = shard_paths(shards_dir, split)
    return DataLoader(
        make_dataset(urls, frame_size, shuffle),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )


def inspect_tar(path: str | Path, n: int = 5) -> list[str]:
    """Human-readable lines about the first n samples (0: all) of one shard."""
    from vtcurate.video.frames import decode_jpeg

    samples: dict[str, dict[str, bytes]] = {}  # only the first n samples' bytes are kept
    keys: set[str] = set()
    try:
        tar = tarfile.open(path)  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as err:
        raise UserError(f"{path}: not a readable tar shard ({err})") from None
    with tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition("/")[2].partition(".")
            keys.add(key)
            if key in samples or not n or len(samples) < n:
                fh = tar.extractfile(member)
                samples.setdefault(key, {})[ext] = fh.read() if fh else b""
    lines = [f"{path}: {len(keys)} samples"]
    for key, files in samples.items():
        meta = json.loads(files.get("json", b"{}"))
        frames = [files[k] for k in sorted(files, key=lambda k: (len(k), k)) if _FRAME.match(k)]
        sizes = {
            "x".join(map(str, decode_jpeg(f).shape[1::-1]))
            for f in frames
        }
        lines.append(f"- {key} [{meta.get('lang')}] {files.get('txt', b'').decode('utf-8')!r}")
        lines.append(
            f"    {len(frames)} frames {'/'.join(sorted(sizes))}, "
            f"t={[round(t, 2) for t in meta.get('frame_times') or []]}, source={meta.get('video')}"
        )
    return lines
