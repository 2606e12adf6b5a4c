"""Batches for training and evaluation, from the run's WebDataset shards or from a video folder.

A batch is a dict: `frames` (B x T x C x H x W float, the backbone's own preprocessing), `tokens`
(B x L, the backbone's tokenizer), `aux_tokens` (B x K x L) with `aux_mask` (B x K, True where a
clip has that auxiliary caption), and per clip `keys`, `langs` and `captions`.

Training streams shards with webdataset: shards are resampled with replacement (an endless stream,
so "epochs" are just a count of samples and every DDP rank and loader worker draws its own shard
sequence), then mixed in a shuffle buffer, so English and Chinese shards share batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch

from vtcurate.errors import UserError
from vtcurate.models.video_clip import frame_index
from vtcurate.pipeline.shards import frame_members, shard_paths, verify_shards

Sample = dict  # {"frames": T x C x H x W, "caption", "aux": [str], "key", "lang"}


def aux_texts(meta: dict, limit: int) -> list[str]:
    """The clip's auxiliary captions from its shard metadata, first `limit` (any language)."""
    return [a["text"] for a in meta.get("aux_captions") or [] if a.get("text")][:limit]


class FrameDecoder:
    """A clip's images -> the model's input frames (T x C x H x W float): the `num_frames` the model
    sees (`frame_index`), each through the backbone's own preprocessing.

    open_clip's preprocessing ends with to-tensor and Normalize; the steps before them (resize,
    crop) give uint8 pixels, and with `cache` those are kept per sample key, so the repeated passes
    of training over the same shards decode and resize each clip once.  Normalising the cached
    pixels gives the same floats as preprocessing the image again."""

    def __init__(self, preprocess: Callable, num_frames: int, cache: bool = False) -> None:
        from torchvision.transforms import Compose, Normalize, PILToTensor

        steps = getattr(preprocess, "transforms", [])
        self.num_frames = num_frames
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None
        ends_normalised = len(steps) >= 2 and isinstance(steps[-1], Normalize)
        if ends_normalised and type(steps[-2]).__name__.endswith("ToTensor"):
            self.to_pixels = Compose([*steps[:-2], PILToTensor()])
            norm = steps[-1]
            self.mean = torch.tensor(norm.mean).view(1, -1, 1, 1)
            self.std = torch.tensor(norm.std).view(1, -1, 1, 1)
        else:  # some other preprocessing: its float output is what is kept
            self.to_pixels, self.mean = preprocess, None

    def __call__(self, images: list, key: str | None = None) -> torch.Tensor:
        """`images`: the clip's frames in time order (H x W x 3 uint8 arrays, or callables that
        return one, so that a cached clip's JPEGs are never decoded)."""
        from PIL import Image

        pixels = self.cache.get(key) if self.cache is not None and key is not None else None
        if pixels is None:
            chosen = [images[i] for i in frame_index(len(images), self.num_frames)]
            pixels = torch.stack(
                [self.to_pixels(Image.fromarray(img() if callable(img) else img)) for img in chosen]
            )
            if self.cache is not None and key is not None:
                self.cache[key] = pixels
        if self.mean is None:
            return pixels
        return (pixels.float() / 255 - self.mean) / self.std  # as to-tensor, then Normalize


def decode_shard_sample(sample: dict, frames: FrameDecoder, max_aux: int) -> Sample:
    from vtcurate.video.frames import decode_jpeg

    meta = json.loads(sample["json"])
    return {
        "frames": frames([partial(decode_jpeg, sample[k]) for k in frame_members(sample)], sample["__key__"]),
        "caption": sample["txt"].decode("utf-8"),
        "aux": aux_texts(meta, max_aux),
        "key": sample["__key__"],
        "lang": meta.get("lang") or "und",
    }


def drop_tokens(tokens: torch.Tensor, share: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """MAC text masking: drop `share` of each caption's content tokens (never start/end), keeping
    order, so the text encoder sees shorter sequences.  Ids are left-packed, padding is 0."""
    out = torch.zeros_like(tokens)
    for i, row in enumerate(tokens):
        ids = row[row != 0]
        inner = ids[1:-1]
        keep = max(1, round(len(inner) * (1 - share)))
        if len(inner) > keep:
            chosen = torch.randperm(len(inner), generator=generator)[:keep].sort().values
            inner = inner[chosen]
        packed = torch.cat([ids[:1], inner, ids[-1:]])
        out[i, : len(packed)] = packed
    return out


class Collate:
    """Samples -> batch dict; tokenises captions and auxiliary captions in one call each.
    `max_aux` 0: no auxiliary captions (models without ACG do not pay for tokenising them)."""

    def __init__(self, tokenizer: Callable, max_aux: int, text_drop: float = 0.0) -> None:
        self.tokenizer = tokenizer
        self.max_aux = max_aux
        self.text_drop = text_drop

    def __call__(self, samples: list[Sample]) -> dict:
        tokens = self.tokenizer([s["caption"] for s in samples])
        if self.text_drop:
            tokens = drop_tokens(tokens, self.text_drop)
        batch = {
            "frames": torch.stack([s["frames"] for s in samples]),
            "tokens": tokens,
            "keys": [s["key"] for s in samples],
            "langs": [s["lang"] for s in samples],
            "captions": [s["caption"] for s in samples],
        }
        if k := self.max_aux:
            aux_mask = torch.zeros(len(samples), k, dtype=torch.bool)
            texts = []
            for i, s in enumerate(samples):
                aux = s["aux"][:k]
                aux_mask[i, : len(aux)] = True
                texts += aux + [""] * (k - len(aux))
            batch["aux_tokens"] = self.tokenizer(texts).reshape(len(samples), k, -1)
            batch["aux_mask"] = aux_mask
        return batch


def _urls(shards_dir: str | Path, split: str) -> list[str]:
    if not (Path(shards_dir) / "index.json").is_file():
        raise UserError(f"{shards_dir}: no index.json; point at a run's shards/ directory")
    urls = shard_paths(shards_dir, split)
    if not urls:
        raise UserError(f"{shards_dir}: no shard of split {split!r} in index.json")
    return urls


def train_loader(
    shards_dir: str | Path,
    split: str,
    frames: FrameDecoder,
    collate: Collate,
    batch_size: int,
    num_workers: int,
    shuffle_buffer: int,
    seed: int,
    verify: bool = True,
):
    """An endless stream of training batches (resampled shards, shuffled samples)."""
    import webdataset as wds

    if verify:
        verify_shards(shards_dir, split)
    # resampled: every rank and loader worker draws its own shard sequence (seeded per rank and
    # worker), so the stream needs no node or worker splitting
    ds = wds.WebDataset(
        _urls(shards_dir, split), resampled=True, shardshuffle=False, seed=seed, empty_check=False,
        nodesplitter=None, workersplitter=None,
    )  # fmt: skip
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer)
    ds = ds.map(lambda s: decode_shard_sample(s, frames, collate.max_aux))
    ds = ds.batched(batch_size, collation_fn=collate, partial=False)
    return wds.WebLoader(
        ds,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=_one_thread,
    )


def _one_thread(_worker: int) -> None:
    # a loader worker only decodes; torch's default intra-op threads would compete with training's
    # (oversubscribed OpenMP threads made a 2-CPU machine ~10x slower)
    torch.set_num_threads(1)


def shard_eval_batches(
    shards_dir: str | Path, split: str, frames: FrameDecoder, collate: Collate, batch_size: int
) -> Iterator[dict]:
    """Each sample of `split` once, in index order."""
    import webdataset as wds

    ds = wds.WebDataset(_urls(shards_dir, split), shardshuffle=False, empty_check=False)
    ds = ds.map(lambda s: decode_shard_sample(s, frames, collate.max_aux))
    yield from ds.batched(batch_size, collation_fn=collate, partial=True)


def folder_eval_batches(
    annotations: str | Path,
    videos: str | Path,
    preprocess: Callable,
    collate: Collate,
    batch_size: int,
    num_frames: int = 8,
) -> Iterator[dict]:
    """MSR-VTT-style evaluation input: jsonl rows {clip_id, text[, lang]} and `videos/<clip_id>.*`;
    8 frames are sampled as the keyframes stage samples them (middle of 8 equal segments), all passed
    on (a model that sees fewer chooses its own)."""
    from vtcurate.config import IngestConfig, KeyframesConfig
    from vtcurate.video.frames import read_keyframes, resize_short_side
    from vtcurate.video.probe import probe
    from vtcurate.video.source import VideoSourceError

    cfg, probe_backends = KeyframesConfig(), IngestConfig().probe_backends
    decode = FrameDecoder(preprocess, num_frames)
    rows = _read_annotations(annotations)
    folder = Path(videos)
    batch: list[Sample] = []
    for row in rows:
        matches = sorted(folder.glob(f"{row['clip_id']}.*"))
        if not matches:
            raise UserError(f"{videos}: no video for clip_id {row['clip_id']!r}")
        try:
            info = probe(str(matches[0]), probe_backends)
            frames = read_keyframes(str(matches[0]), 0.0, info.duration, num_frames, cfg.mode, cfg.backends)
        except VideoSourceError as err:
            raise UserError(f"{matches[0]}: cannot sample frames ({err.code}: {err.detail})") from None
        batch.append(
            {
                "frames": decode([resize_short_side(img, cfg.short_side) for img in frames.images]),
                "caption": row["text"],
                "aux": [],
                "key": row["clip_id"],
                "lang": row.get("lang") or _guess_lang(row["text"]),
            }
        )
        if len(batch) == batch_size:
            yield collate(batch)
            batch = []
    if batch:
        yield collate(batch)


def _guess_lang(text: str) -> str:
    from vtcurate.text.script import script_stats

    return "zh" if script_stats(text).han_ratio >= 0.5 else "en"


def _read_annotations(path: str | Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{n}: not JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("clip_id"), str) or not row.get("text"):
            raise UserError(f"{path}:{n}: each line needs a string clip_id and a non-empty text")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no annotation rows")
    return rows
