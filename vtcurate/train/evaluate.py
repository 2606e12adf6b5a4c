"""Zero-shot retrieval evaluation of a trained VideoCLIP: `vtcurate eval` and the end of `train`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from vtcurate.errors import UserError
from vtcurate.models.video_clip import VideoCLIP
from vtcurate.storage import write_json
from vtcurate.train.data import Collate, FrameDecoder, folder_eval_batches, shard_eval_batches
from vtcurate.train.metrics import format_table, retrieval_report


@torch.inference_mode()
def embed(model: VideoCLIP, batches: Iterable[dict]) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Text and video embeddings (N x D each), languages and keys of every clip in `batches`."""
    model.eval()
    device = next(model.parameters()).device
    texts, videos, langs, keys = [], [], [], []
    for batch in batches:
        aux = aux_mask = None
        if model.acg is not None and "aux_mask" in batch and batch["aux_mask"].any():
            aux_mask = batch["aux_mask"].to(device)
            aux = model.encode_aux(batch["aux_tokens"].to(device), aux_mask)
        video, _ = model.encode_video(batch["frames"].to(device), aux, aux_mask)
        videos.append(video.float().cpu().numpy())
        texts.append(model.encode_text(batch["tokens"].to(device)).float().cpu().numpy())
        langs += batch["langs"]
        keys += batch["keys"]
    if not keys:
        raise UserError("nothing to evaluate: the evaluation set is empty")
    return np.concatenate(texts), np.concatenate(videos), langs, keys


def evaluate_batches(model: VideoCLIP, batches: Iterable[dict], out_dir: str | Path, source: str) -> dict:
    text, video, langs, keys = embed(model, batches)
    report = {
        "source": source,
        "clips": len(keys),
        "weights": model.weights,
        **retrieval_report(text, video, langs),
    }
    write_json(report, Path(out_dir) / "eval.json")
    return report


def _collate(model: VideoCLIP) -> Collate:
    # auxiliary captions only for an ACG model; no text masking at evaluation
    return Collate(model.tokenizer, model.cfg.max_aux if model.acg is not None else 0)


def evaluate_shards(model: VideoCLIP, shards_dir, split: str, out_dir, batch_size: int = 32) -> dict:
    frames = FrameDecoder(model.preprocess, model.cfg.num_frames)
    batches = shard_eval_batches(shards_dir, split, frames, _collate(model), batch_size)
    return evaluate_batches(model, batches, out_dir, f"{shards_dir} (split {split})")


def evaluate_folder(model: VideoCLIP, annotations, videos, out_dir, batch_size: int = 32) -> dict:
    batches = folder_eval_batches(annotations, videos, model.preprocess, _collate(model), batch_size)
    return evaluate_batches(model, batches, out_dir, f"{annotations} + {videos}")


def print_report(report: dict) -> str:
    blocks = {k: v for k, v in report.items() if isinstance(v, dict) and "t2v" in v}
    return f"{report['source']}: {report['clips']} clips\n" + format_table(blocks)
