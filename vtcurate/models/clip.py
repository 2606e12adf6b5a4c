"""open_clip image-text models: one loader for pretrained tags, checkpoint files and hub ids.

`load_clip(spec)` is the only way vtcurate builds a CLIP model, for real weights and for the small
randomly initialised ones of tests and the demo, so both go through the same code.  A checkpoint
saved by `save_checkpoint` carries a note of whether its weights were trained; a model built with
`pretrained: null` is random.  `provenance()["random_weights"]` says which, for run.json and the
report's banner.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vtcurate.checksums import file_sha256
from vtcurate.config import ClipModelSpec
from vtcurate.errors import UserError
from vtcurate.models.devices import autocast, precision, resolve_device

log = logging.getLogger(__name__)

BUNDLED_CONFIGS = "clip_configs"  # small architectures shipped in vtcurate/models/clip_configs/
META_KEY = "vtcurate"
HUB_PREFIXES = ("hf-hub:", "local-dir:")  # open_clip names that load weights along with the config


class ClipLoadError(UserError):
    """The configured CLIP model cannot be built or its weights cannot be loaded."""


@cache
def _register_bundled() -> None:
    import open_clip

    open_clip.add_model_config(str(resources.files("vtcurate.models").joinpath(BUNDLED_CONFIGS)))


def save_checkpoint(model: torch.nn.Module, path: str | Path, *, trained: bool, note: str = "") -> Path:
    """Save weights in the form `load_clip` reads (a state_dict plus a note of their origin)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"trained": trained, "note": note}
    torch.save({"state_dict": model.state_dict(), META_KEY: json.dumps(meta)}, path)
    return path


def _read_meta(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    raw = ckpt.get(META_KEY) if isinstance(ckpt, dict) else None
    return json.loads(raw) if isinstance(raw, str) else {}


def weights_info(spec: ClipModelSpec) -> dict:
    """Where a spec's weights come from and whether they are random, without building the model."""
    weights = spec.pretrained
    file = Path(weights) if weights and Path(weights).is_file() else None
    if weights and file is None and ("/" in weights or weights.endswith((".pt", ".bin", ".safetensors"))):
        raise ClipLoadError(f"clip model {spec.name}: checkpoint file not found: {weights}")
    meta = _read_meta(file) if file else {}
    return {
        "model": spec.name,
        "pretrained": weights,
        "sha256": file_sha256(file) if file else None,
        "note": meta.get("note"),
        # an hf-hub:/local-dir: name carries its own weights; otherwise no `pretrained` means random
        "random_weights": (weights is None and not spec.name.startswith(HUB_PREFIXES))
        or meta.get("trained") is False,
    }


def create_clip(spec: ClipModelSpec, device: str, precision: str):
    """Build the open_clip model of `spec` (weights loaded, train mode) with its preprocessing and
    tokenizer: the one construction path for scoring (ClipModel) and for training (VideoCLIP)."""
    import open_clip

    _register_bundled()
    if spec.config_file:
        open_clip.add_model_config(spec.config_file)
    weights = spec.pretrained
    info = weights_info(spec)
    file = Path(weights) if info["sha256"] else None
    torch.manual_seed(spec.seed)  # a random init is the same in every worker
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.name, pretrained=None if file else weights, precision=precision, device=device
        )
        if file:
            open_clip.load_checkpoint(model, str(file))
    except (RuntimeError, ValueError, OSError) as err:
        raise ClipLoadError(f"clip model {spec.name} (pretrained={weights}): {err}") from err
    return model, preprocess, open_clip.get_tokenizer(spec.name), info


class ClipModel:
    """A loaded open_clip model with its preprocessing and tokenizer; embeds frames and texts."""

    def __init__(self, spec: ClipModelSpec) -> None:
        self.spec = spec
        self.device = resolve_device(spec.device, f"clip model {spec.name}: device")
        self.precision = precision(self.device, spec.precision)
        model, self.preprocess, self.tokenizer, info = create_clip(spec, self.device, self.precision)
        self.model = model.eval()
        self.random_weights = info["random_weights"]
        self._provenance = {**info, "device": self.device, "precision": self.precision}

    def provenance(self) -> dict:
        return dict(self._provenance)

    @property
    def model_id(self) -> str:
        sha = self._provenance["sha256"]
        return f"{self.spec.name}:{sha[:12] if sha else self.spec.pretrained or 'random'}"

    def _autocast(self):
        # autocast on CUDA only: on the CPU a half precision is open_clip's cast of the weights
        return autocast(self.device, self.precision if self.device == "cuda" else "fp32")

    @torch.inference_mode()
    def embed_images(self, jpegs: list[bytes]) -> np.ndarray:
        """L2-normalised embeddings (N×D float32) of JPEG-encoded images."""
        from PIL import Image

        from vtcurate.video.frames import decode_jpeg

        if not jpegs:
            return np.zeros((0, self.embed_dim), np.float32)
        pixels = torch.stack([self.preprocess(Image.fromarray(decode_jpeg(b))) for b in jpegs])
        with self._autocast():
            feats = self.model.encode_image(pixels.to(self.device))
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        tokens = self.tokenizer(texts).to(self.device)
        with self._autocast():
            feats = self.model.encode_text(tokens)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    @property
    def embed_dim(self) -> int:
        proj = getattr(self.model.visual, "output_dim", None)
        return int(proj) if proj else int(self.model.text_projection.shape[-1])


_LOADED: dict[str, ClipModel] = {}


def load_clip(spec: ClipModelSpec) -> ClipModel:
    """The model for `spec`, loaded once per process (stages of one worker share it)."""
    key = spec.model_dump_json()
    if key not in _LOADED:
        log.info("loading clip model %s (pretrained=%s)", spec.name, spec.pretrained)
        _LOADED[key] = ClipModel(spec)
    return _LOADED[key]
